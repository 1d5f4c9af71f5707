// Package sqlite is Latch's embedded default store: metadata in an SQLite
// database, message bytes in blob files beside it.
//
// Invariants a contributor must keep:
//
//   - Every write goes through the committer goroutine (Store.write). It owns
//     the single write connection and the prepared statements on it; nothing
//     else touches them. It runs every request waiting for it in one
//     transaction, each request inside its own SAVEPOINT so that a failing
//     request rolls back alone, and answers the requests only after COMMIT
//     returned (WAL, synchronous=FULL: the commit is on disk).
//   - A blob file is written in tmp/ and renamed into blobs/ before the
//     request that references it is handed to the committer, which makes
//     the batch's blob files and their directory entries durable (one
//     syncfs, or each file's fsync by its writer and one fsync per
//     directory) before it begins the transaction that references them.
//   - blobs.refs counts the messages referencing a blob (kept by triggers);
//     a blob whose count drops to zero loses its row in the same
//     transaction and its file after the commit. Open removes the files no
//     row references, which a crash at any point can leave behind.
//   - Mailbox counters (messages, unseen, deleted, size) are kept in the
//     mailbox row by triggers on messages, in the transaction that changes
//     the messages; uidnext and highestmodseq are advanced by the code that
//     adds or changes messages, in the same request.
//   - Watchers of a mailbox are woken (their channel closed) after the commit
//     that changed it and before the writer is answered, so a caller that
//     saw its write return also sees the wake-up. watchers.mu guards only the
//     map of channels.
//   - Reads use a separate pool of read-only connections and see committed
//     data only.
//   - dir/lock is held with flock for the life of the Store, so no second
//     Store, in this process or another, opens the same directory.
//
// The directory holds latch.db (with its -wal and -shm files), blobs/xx/
// with one file per distinct message body, tmp/ for bodies being received,
// and lock.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/latchmail/latch/internal/store"
	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// ErrClosed is returned by writes to a closed Store.
var ErrClosed = errors.New("store: closed")

// maxBatch bounds how many requests share one transaction, so that one
// commit does not make its first writer wait for an unbounded queue.
const maxBatch = 512

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// ReadConns is the number of read connections; default
	// max(4, GOMAXPROCS).
	ReadConns int
	// SyncEachFile makes each append fsync its own blob file, and the
	// committer fsync the directories of a batch's blobs, instead of one
	// syncfs(2) of the filesystem per batch. syncfs needs one device flush
	// for a whole batch where file by file needs one per message, which
	// makes concurrent appends several times faster; but it also flushes
	// whatever other programs left unwritten on the same filesystem. Set it
	// when the store shares a filesystem with heavy writers of their own.
	// It is always in effect where syncfs is not available (not Linux).
	SyncEachFile bool
	// Logger receives errors that cannot be returned to a caller, such as
	// failing to remove a blob file after the commit that freed it.
	// Default: slog.Default().
	Logger *slog.Logger
}

// Store is a store.Store kept in a directory. It is safe for concurrent use.
type Store struct {
	dir  string
	log  *slog.Logger
	lock *os.File

	rdb    *sql.DB
	rstmts sync.Map // query string -> *sql.Stmt on rdb

	prepMu     sync.Mutex     // guards prepClosed and adding to preps
	prepClosed bool           // Close has begun: no more preparations
	preps      sync.WaitGroup // background preparations, waited for by Close

	wdb    *sql.DB
	wconn  *sql.Conn
	wstmts map[string]*sql.Stmt // committer goroutine only

	reqs     chan *writeReq // unbuffered: a send succeeds only if the committer takes it
	quit     chan struct{}
	loopDone chan struct{}
	closing  sync.Once
	closeErr error

	// syncFS, if not nil, makes all blob files written so far durable,
	// with their directory entries; if nil, writeBlob syncs each file and
	// the committer each directory.
	syncFS      func() error
	closeSyncFS func() error

	nextBlob atomic.Int64
	watch    watchers
}

var _ store.Store = (*Store)(nil)

// Open opens the store in dir, creating dir and an empty store if needed. It
// fails if another Store, in this or another process, has dir open. opts may
// be nil.
func Open(dir string, opts *Options) (*Store, error) {
	if opts == nil {
		opts = &Options{}
	}
	s := &Store{
		dir:      dir,
		log:      opts.Logger,
		wstmts:   make(map[string]*sql.Stmt),
		reqs:     make(chan *writeReq),
		quit:     make(chan struct{}),
		loopDone: make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.watch.m = make(map[store.MailboxID]chan struct{})
	if err := s.open(opts); err != nil {
		s.closeHandles()
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	go s.commitLoop()
	return s, nil
}

func (s *Store) open(opts *Options) error {
	if err := s.makeDirs(); err != nil {
		return err
	}
	lock, err := lockDir(filepath.Join(s.dir, "lock"))
	if err != nil {
		return err
	}
	s.lock = lock
	if !opts.SyncEachFile {
		if s.syncFS, s.closeSyncFS, err = openSyncFS(filepath.Join(s.dir, "blobs")); err != nil {
			return err
		}
	}

	path := filepath.Join(s.dir, "latch.db")
	// The writer sets WAL first; readers opened later find it in the file.
	s.wdb, err = sql.Open("sqlite", dsn(path,
		"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(FULL)",
		"foreign_keys(1)", "cache_size(-65536)"))
	if err != nil {
		return err
	}
	s.wdb.SetMaxOpenConns(1)
	ctx := context.Background()
	if s.wconn, err = s.wdb.Conn(ctx); err != nil {
		return err
	}
	var mode string
	if err := s.wconn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if mode != "wal" {
		return fmt.Errorf("journal mode is %q, not wal", mode)
	}
	if err := s.migrate(ctx); err != nil {
		return err
	}

	n := opts.ReadConns
	if n <= 0 {
		n = max(4, runtime.GOMAXPROCS(0))
	}
	s.rdb, err = sql.Open("sqlite", dsn(path,
		"busy_timeout(10000)", "query_only(1)", "cache_size(-16384)"))
	if err != nil {
		return err
	}
	s.rdb.SetMaxOpenConns(n)
	s.rdb.SetMaxIdleConns(n)
	return s.collectGarbage(ctx)
}

func dsn(path string, pragmas ...string) string {
	q := url.Values{"_pragma": pragmas}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// Close waits for the write being committed, refuses further writes, wakes
// every watcher and releases the directory.
func (s *Store) Close() error {
	s.closing.Do(func() {
		close(s.quit)
		<-s.loopDone
		s.watch.closeAll()
		s.prepMu.Lock()
		s.prepClosed = true
		s.prepMu.Unlock()
		s.preps.Wait()
		s.closeErr = s.closeHandles()
	})
	return s.closeErr
}

func (s *Store) closeHandles() error {
	var errs []error
	s.rstmts.Range(func(_, v any) bool {
		errs = append(errs, v.(*sql.Stmt).Close())
		return true
	})
	for _, st := range s.wstmts {
		errs = append(errs, st.Close())
	}
	if s.wconn != nil {
		errs = append(errs, s.wconn.Close())
	}
	if s.wdb != nil {
		errs = append(errs, s.wdb.Close())
	}
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
	}
	if s.closeSyncFS != nil {
		errs = append(errs, s.closeSyncFS())
	}
	if s.lock != nil {
		errs = append(errs, s.lock.Close()) // closing the file drops the flock
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("store: close %s: %w", s.dir, err)
	}
	return nil
}

// rstmt returns a prepared statement on the read pool, preparing it once.
func (s *Store) rstmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := s.rstmts.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := s.rdb.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if prev, loaded := s.rstmts.LoadOrStore(query, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// readTx runs fn in one read transaction, so that its queries see one
// snapshot.
func (s *Store) readTx(ctx context.Context, fn func(tx *readTx) error) error {
	tx, err := s.rdb.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // read-only: nothing to commit
	return fn(&readTx{s: s, ctx: ctx, tx: tx})
}

// readTx is a read transaction on the read pool.
type readTx struct {
	s   *Store
	ctx context.Context
	tx  *sql.Tx
}

// A transaction holds one connection of the read pool. It must never ask
// the pool for another (as preparing a statement on the pool does): with
// every connection held by a transaction waiting for one more, readers
// would deadlock. So a statement not yet prepared runs unprepared on the
// transaction's own connection, and is prepared on the pool in the
// background for next time.

func (r *readTx) stmt(q string) *sql.Stmt {
	if st, ok := r.s.rstmts.Load(q); ok {
		return r.tx.StmtContext(r.ctx, st.(*sql.Stmt))
	}
	r.s.prepareLater(q)
	return nil
}

// prepareLater prepares q on the pool in the background, for next time.
func (s *Store) prepareLater(q string) {
	s.prepMu.Lock()
	defer s.prepMu.Unlock()
	if !s.prepClosed {
		s.preps.Go(func() { _, _ = s.rstmt(context.Background(), q) })
	}
}

func (r *readTx) query(q string, args ...any) (*sql.Rows, error) {
	if st := r.stmt(q); st != nil {
		return st.QueryContext(r.ctx, args...)
	}
	return r.tx.QueryContext(r.ctx, q, args...)
}

func (r *readTx) queryRow(q string, args ...any) *sql.Row {
	if st := r.stmt(q); st != nil {
		return st.QueryRowContext(r.ctx, args...)
	}
	return r.tx.QueryRowContext(r.ctx, q, args...)
}

// queryRow runs a one-row query on the read pool outside a transaction.
func (s *Store) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	st, err := s.rstmt(ctx, q)
	if err != nil {
		return s.rdb.QueryRowContext(ctx, q, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// isUniqueViolation reports whether err is SQLite refusing a duplicate key.
func isUniqueViolation(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return true
	}
	return false
}

// noRows maps sql.ErrNoRows to store.ErrNotFound.
func noRows(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}
