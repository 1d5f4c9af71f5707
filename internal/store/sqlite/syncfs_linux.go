package sqlite

import (
	"os"

	"golang.org/x/sys/unix"
)

// openSyncFS returns a function that makes everything written to the
// filesystem holding dir durable with syncfs(2): data, inodes and directory
// entries, in one journal commit and one device flush. It keeps a
// descriptor open so that the kernel reports writeback errors that happened
// since (Linux 5.8 and later).
func openSyncFS(dir string) (sync func() error, close func() error, err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, nil, err
	}
	return func() error { return unix.Syncfs(int(f.Fd())) }, f.Close, nil
}
