//go:build !linux

package sqlite

// openSyncFS reports that syncfs(2) is not available: blobs are synced file
// by file.
func openSyncFS(dir string) (sync func() error, close func() error, err error) {
	return nil, nil, nil
}
