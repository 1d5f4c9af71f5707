package sqlite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"

	"github.com/latchmail/latch/internal/store"
)

// Blob files live in blobs/xx/<id in hex>, xx being the second-lowest byte
// of the ID: no directory grows past a few thousand entries per million
// messages, and blobs written at about the same time share a directory, so
// that one fsync of it makes a whole batch of renames durable. They are
// written in tmp/ and renamed into place.

func (s *Store) makeDirs() error {
	for _, d := range []string{s.dir, filepath.Join(s.dir, "tmp"), filepath.Join(s.dir, "blobs")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	for i := range 256 {
		if err := os.MkdirAll(s.blobSubdir(i), 0o700); err != nil {
			return err
		}
	}
	// Make the directories themselves durable before anything relies on them.
	for _, d := range []string{filepath.Dir(s.dir), s.dir, filepath.Join(s.dir, "blobs")} {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	return nil
}

func blobFanout(id int64) int { return int(id>>8) & 0xff }

func (s *Store) blobSubdir(i int) string {
	return filepath.Join(s.dir, "blobs", fmt.Sprintf("%02x", i))
}

func (s *Store) blobDir(id int64) string { return s.blobSubdir(blobFanout(id)) }

func (s *Store) blobPath(id int64) string {
	return filepath.Join(s.blobDir(id), strconv.FormatInt(id, 16))
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// writeBlob streams r into a new blob file and renames it into place; it
// syncs the file unless the committer will sync the whole filesystem. The
// blob is durable only once the committer has synced (syncBlobs) before
// committing the row that references it; until then no row references it
// and the caller must commit one or remove it.
func (s *Store) writeBlob(r io.Reader) (id, size, lineSize int64, err error) {
	if r == nil {
		return 0, 0, 0, errors.New("message has no body reader")
	}
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "blob-*")
	if err != nil {
		return 0, 0, 0, err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	buf := copyBufs.Get().(*[]byte)
	// Hide any WriterTo/ReaderFrom so the copy goes through our buffer in
	// bounded pieces rather than some reader's idea of how much to hold.
	var lines store.LineCounter
	size, err = io.CopyBuffer(io.MultiWriter(f, &lines), struct{ io.Reader }{r}, *buf)
	copyBufs.Put(buf)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("read message: %w", err)
	}
	if s.syncFS == nil {
		if err = f.Sync(); err != nil {
			return 0, 0, 0, err
		}
	}
	if err = f.Close(); err != nil {
		return 0, 0, 0, err
	}
	id = s.nextBlob.Add(1)
	if err = os.Rename(tmp, s.blobPath(id)); err != nil {
		return 0, 0, 0, err
	}
	return id, size, lines.Size(), nil
}

// removeBlob removes the file of a blob whose row was never committed.
func (s *Store) removeBlob(id int64) {
	if err := os.Remove(s.blobPath(id)); err != nil {
		s.log.Error("store: remove uncommitted blob", "blob", id, "err", err)
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}

// collectGarbage runs at Open, before any write: it removes temporary files
// and blob files that no committed row references (a crash between writing
// a blob and committing its row, or between committing a blob's removal and
// unlinking it, leaves them), and sets the next blob ID past every ID in use.
func (s *Store) collectGarbage(ctx context.Context) error {
	tmp := filepath.Join(s.dir, "tmp")
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.Remove(filepath.Join(tmp, e.Name())); err != nil {
			return err
		}
	}

	var files []int64
	for i := range 256 {
		d := s.blobSubdir(i)
		ents, err := os.ReadDir(d)
		if err != nil {
			return err
		}
		for _, e := range ents {
			id, err := strconv.ParseInt(e.Name(), 16, 64)
			if err != nil || blobFanout(id) != i {
				s.log.Warn("store: unexpected file among blobs", "path", filepath.Join(d, e.Name()))
				continue
			}
			files = append(files, id)
		}
	}
	slices.Sort(files)

	// Merge the sorted file IDs with the sorted referenced IDs.
	rows, err := s.wconn.QueryContext(ctx, "SELECT id FROM blobs WHERE refs > 0 ORDER BY id")
	if err != nil {
		return err
	}
	var orphans []int64
	var maxID int64
	i := 0
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		maxID = id
		for i < len(files) && files[i] < id {
			orphans = append(orphans, files[i])
			i++
		}
		if i < len(files) && files[i] == id {
			i++
		} else {
			// Not ours to repair: say so loudly, serve the rest.
			s.log.Error("store: blob file of a stored message is missing", "path", s.blobPath(id))
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return err
	}
	orphans = append(orphans, files[i:]...)
	for _, id := range orphans {
		if err := os.Remove(s.blobPath(id)); err != nil {
			return err
		}
	}
	if len(orphans) > 0 {
		s.log.Info("store: removed unreferenced blob files", "count", len(orphans))
	}
	// Rows left unreferenced by an interrupted commit cannot exist (their
	// deletion is in the same transaction), but be tolerant of them.
	if _, err := s.wconn.ExecContext(ctx, "DELETE FROM blobs WHERE refs <= 0"); err != nil {
		return err
	}
	if len(files) > 0 {
		maxID = max(maxID, files[len(files)-1])
	}
	s.nextBlob.Store(maxID)
	return nil
}
