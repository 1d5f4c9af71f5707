//go:build !unix

package sqlite

import (
	"errors"
	"os"
)

// lockDir is not implemented here: without a lock two stores could share a
// directory and corrupt it, so refuse to open.
func lockDir(path string) (*os.File, error) {
	return nil, errors.New("directory locking is not implemented on this platform")
}
