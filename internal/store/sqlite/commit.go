package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"

	"github.com/latchmail/latch/internal/store"
)

// writeReq is one write waiting for the committer.
type writeReq struct {
	ctx     context.Context
	fn      func(*txn) error
	blobDir string     // if set, fn references a blob written in this directory
	done    chan error // buffered: the committer never blocks answering
}

// txn is what a request's function sees: the write connection inside the
// batch's transaction and its own savepoint.
type txn struct {
	s    *Store
	wake []store.MailboxID // mailboxes to wake once committed
}

// commitError marks a failure of the batch's COMMIT (or BEGIN): the request
// itself succeeded, but whether its effects are on disk is unknown, so blob
// files it references must be left for Open to sort out.
type commitError struct{ err error }

func (e *commitError) Error() string { return "commit: " + e.err.Error() }
func (e *commitError) Unwrap() error { return e.err }

// write hands fn to the committer and waits until the transaction that ran
// it is committed. fn must do all its work through x and may run only once.
func (s *Store) write(ctx context.Context, fn func(x *txn) error) error {
	return s.submit(&writeReq{ctx: ctx, fn: fn})
}

// submit hands r to the committer and waits for its answer.
func (s *Store) submit(r *writeReq) error {
	r.done = make(chan error, 1)
	ctx := r.ctx
	select {
	case s.reqs <- r:
	case <-s.quit:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once taken, the request is run or refused by the committer; waiting
	// for its answer even if ctx ends keeps the outcome known.
	return <-r.done
}

func (s *Store) commitLoop() {
	defer close(s.loopDone)
	batch := make([]*writeReq, 0, maxBatch)
	for {
		select {
		case r := <-s.reqs:
			batch = append(batch[:0], r)
		case <-s.quit:
			return
		}
		// Take everyone who queued up while the previous batch was syncing.
	more:
		for len(batch) < maxBatch {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break more
			}
		}
		s.runBatch(batch)
		clear(batch)
	}
}

// runBatch runs the requests in one transaction and answers each.
func (s *Store) runBatch(batch []*writeReq) {
	errs := make([]error, len(batch))
	var wake []store.MailboxID
	var orphans []int64

	s.syncBlobs(batch, errs)
	err := s.wexec("BEGIN IMMEDIATE")
	if err == nil {
		for i, r := range batch {
			if errs[i] != nil {
				continue
			}
			if errs[i] = r.ctx.Err(); errs[i] != nil {
				continue
			}
			x := &txn{s: s}
			errs[i], err = s.runOne(x, r.fn)
			if err != nil {
				break // the transaction is unusable
			}
			if errs[i] == nil {
				wake = append(wake, x.wake...)
			}
		}
	}
	if err == nil {
		orphans, err = s.unreferencedBlobs()
	}
	if err == nil {
		err = s.wexec("COMMIT")
	}
	if err != nil {
		if rerr := s.wexec("ROLLBACK"); rerr != nil {
			s.log.Error("store: rollback after failed commit", "err", rerr)
		}
		err = &commitError{err}
		for i := range errs {
			errs[i] = err
		}
		wake = nil
		orphans = nil
	}
	for _, id := range orphans {
		if rerr := os.Remove(s.blobPath(id)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			s.log.Error("store: remove unreferenced blob", "blob", id, "err", rerr)
		}
	}
	for _, id := range wake {
		s.watch.notify(id)
	}
	for i, r := range batch {
		r.done <- errs[i]
	}
}

// syncBlobs makes the blob files of the batch and their directory entries
// durable: with one syncfs, or by syncing each directory once, in parallel
// (the writers synced the files). A request whose sync failed gets the
// error in errs.
func (s *Store) syncBlobs(batch []*writeReq, errs []error) {
	dirs := make(map[string]error)
	for _, r := range batch {
		if r.blobDir != "" {
			dirs[r.blobDir] = nil
		}
	}
	if len(dirs) == 0 {
		return
	}
	if s.syncFS != nil {
		if err := s.syncFS(); err != nil {
			for d := range dirs {
				dirs[d] = fmt.Errorf("syncfs: %w", err)
			}
		}
	} else {
		names := slices.Collect(maps.Keys(dirs))
		results := make([]error, len(names))
		var wg sync.WaitGroup
		for i, d := range names {
			wg.Go(func() { results[i] = syncDir(d) })
		}
		wg.Wait()
		for i, d := range names {
			dirs[d] = results[i]
		}
	}
	for i, r := range batch {
		if r.blobDir != "" && dirs[r.blobDir] != nil {
			errs[i] = fmt.Errorf("sync %s: %w", r.blobDir, dirs[r.blobDir])
		}
	}
}

// runOne runs fn inside a savepoint. reqErr is fn's failure, rolled back
// alone; txErr means the whole transaction must be abandoned.
func (s *Store) runOne(x *txn, fn func(*txn) error) (reqErr, txErr error) {
	if err := s.wexec("SAVEPOINT req"); err != nil {
		return err, err
	}
	reqErr = fn(x)
	if reqErr != nil {
		if err := s.wexec("ROLLBACK TO req"); err != nil {
			return reqErr, err
		}
	}
	if err := s.wexec("RELEASE req"); err != nil {
		return reqErr, err
	}
	return reqErr, nil
}

// unreferencedBlobs deletes the rows of blobs no message references any
// more and returns their IDs, for removal of the files after the commit.
func (s *Store) unreferencedBlobs() ([]int64, error) {
	rows, err := s.wquery("SELECT id FROM blobs WHERE refs <= 0")
	if err != nil {
		return nil, err
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, err
	}
	if len(ids) > 0 {
		if err := s.wexec("DELETE FROM blobs WHERE refs <= 0"); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// wstmt returns a statement prepared on the write connection. Only the
// committer goroutine (and Open, before it starts) may call it.
func (s *Store) wstmt(q string) (*sql.Stmt, error) {
	if st := s.wstmts[q]; st != nil {
		return st, nil
	}
	st, err := s.wconn.PrepareContext(context.Background(), q)
	if err != nil {
		return nil, fmt.Errorf("prepare %q: %w", q, err)
	}
	s.wstmts[q] = st
	return st, nil
}

func (s *Store) wexec(q string, args ...any) error {
	_, err := s.wexecResult(q, args...)
	return err
}

func (s *Store) wexecResult(q string, args ...any) (sql.Result, error) {
	st, err := s.wstmt(q)
	if err != nil {
		return nil, err
	}
	// The background context: a request that started runs to its end, so
	// that its savepoint is released or rolled back by us, not by an
	// interrupt.
	return st.ExecContext(context.Background(), args...)
}

func (s *Store) wquery(q string, args ...any) (*sql.Rows, error) {
	st, err := s.wstmt(q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(context.Background(), args...)
}

func (s *Store) wqueryRow(q string, args ...any) *sql.Row {
	st, err := s.wstmt(q)
	if err != nil {
		return s.wconn.QueryRowContext(context.Background(), q, args...)
	}
	return st.QueryRowContext(context.Background(), args...)
}

// Helpers for request functions.

func (x *txn) exec(q string, args ...any) error { return x.s.wexec(q, args...) }

func (x *txn) execResult(q string, args ...any) (sql.Result, error) {
	return x.s.wexecResult(q, args...)
}

func (x *txn) query(q string, args ...any) (*sql.Rows, error) { return x.s.wquery(q, args...) }

func (x *txn) queryRow(q string, args ...any) *sql.Row { return x.s.wqueryRow(q, args...) }

func (x *txn) wakeAfter(id store.MailboxID) { x.wake = append(x.wake, id) }
