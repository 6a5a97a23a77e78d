// Package taskindex is a node's index of async task records: the latest
// record of every task in the retention window, as the node follows the
// task stream, kept on disk in SQLite (modernc.org/sqlite, pure Go) with a
// bounded in-memory cache, so a node's memory does not grow with the number
// of tasks and a page of a function's tasks costs the page.
//
// The index is a cache of the stream: it remembers the stream's identity
// and the last sequence applied, in the same transaction as the records, so
// after a restart the node resumes following from there, and after a crash
// or a lost file it rebuilds from the stream. That is why the database runs
// with synchronous=NORMAL in WAL mode: a commit is not fsynced (the last
// commits before a power cut may be lost, and are applied again from the
// stream), but the file is never corrupted by a crash.
//
// Concurrency: writes (Apply, Sweep, Reset) are serialized by the Index and
// run on one connection; Get, List, Counts and Position run concurrently with
// them and with each other on a small pool of read connections, each reading
// a committed snapshot.
package taskindex

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/nimbus-serverless/nimbus"
)

// DefaultCacheSize is the number of records Get keeps in memory when
// Options.CacheSize is 0.
const DefaultCacheSize = 4096

// SQLite settings: the page cache of each connection is bounded (a negative
// cache_size is in KiB), so the index's memory is at most about
// writerCacheKiB + readers*readerCacheKiB plus the record cache.
const (
	readers        = 4
	writerCacheKiB = 16 << 10
	readerCacheKiB = 8 << 10
	walLimit       = 64 << 20 // bytes the WAL file is truncated to after a checkpoint
	busyTimeoutMs  = 5000
)

// Options configure an Index.
type Options struct {
	// CacheSize is how many records Get keeps in memory (least recently
	// used first out); 0: DefaultCacheSize. Negative is invalid.
	CacheSize int
	Logger    *slog.Logger
}

// Index is a node's task index. Its methods are safe for concurrent use.
type Index struct {
	w     *sql.DB // one connection: every write
	r     *sql.DB // up to readers connections, query_only
	log   *slog.Logger
	wmu   sync.Mutex // serializes Apply, Sweep and Reset
	cache *cache
	// The writer's statements, prepared once rather than in every Apply
	// (it was 15 % of a node's CPU under async load).
	load, upsert *sql.Stmt
	get          *sql.Stmt // the readers' Get, prepared once too
}

// Open opens the index at path, creating the file (and its directory) and
// the schema if missing. A file written with another schema version is
// emptied (Position then reports no stream, so the caller rebuilds it).
// Errors: nimbus.ErrInvalid for a bad option; others from the file system
// or SQLite (a file that is not a database, for one).
func Open(path string, o Options) (*Index, error) {
	if o.CacheSize < 0 {
		return nil, fmt.Errorf("task index: cache size %d: %w", o.CacheSize, nimbus.ErrInvalid)
	}
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("task index: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return nil, fmt.Errorf("task index: %w", err)
	}
	c, err := newCache(o.CacheSize)
	if err != nil {
		return nil, fmt.Errorf("task index: %w", err)
	}
	x := &Index{log: o.Logger, cache: c}
	if err := x.open(abs); err != nil {
		x.Close()
		return nil, err
	}
	return x, nil
}

func (x *Index) open(path string) error {
	var err error
	x.w, err = sql.Open("sqlite", dsn(path, false))
	if err != nil {
		return fmt.Errorf("task index: open %s: %w", path, err)
	}
	x.w.SetMaxOpenConns(1)
	x.w.SetMaxIdleConns(1)
	if err := x.migrate(); err != nil {
		return fmt.Errorf("task index: open %s: %w", path, err)
	}
	if err := x.prepare(); err != nil {
		return fmt.Errorf("task index: open %s: %w", path, err)
	}
	x.r, err = sql.Open("sqlite", dsn(path, true))
	if err != nil {
		return fmt.Errorf("task index: open %s: %w", path, err)
	}
	x.r.SetMaxOpenConns(readers)
	x.r.SetMaxIdleConns(readers)
	if err := x.r.Ping(); err != nil {
		return fmt.Errorf("task index: open %s: %w", path, err)
	}
	if x.get, err = x.r.Prepare(loadSQL); err != nil {
		return fmt.Errorf("task index: open %s: prepare: %w", path, err)
	}
	return nil
}

// prepare (re)prepares the writer's statements.
func (x *Index) prepare() error {
	x.closeStmts()
	var err error
	if x.load, err = x.w.Prepare(loadSQL); err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	if x.upsert, err = x.w.Prepare(upsertSQL); err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	return nil
}

func (x *Index) closeStmts() {
	for _, st := range []*sql.Stmt{x.load, x.upsert} {
		if st != nil {
			st.Close()
		}
	}
	x.load, x.upsert = nil, nil
}

// dsn is the data source name of the writer or of a reader connection.
func dsn(path string, reader bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMs))
	if reader {
		q.Add("_pragma", fmt.Sprintf("cache_size(%d)", -readerCacheKiB))
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(NORMAL)")
		q.Add("_pragma", fmt.Sprintf("cache_size(%d)", -writerCacheKiB))
		q.Add("_pragma", fmt.Sprintf("journal_size_limit(%d)", walLimit))
		q.Set("_txlock", "immediate")
	}
	u := url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}
	return u.String()
}

// migrate creates the schema, first emptying a file of another version.
func (x *Index) migrate() error {
	ctx := context.Background()
	var v int
	if err := x.w.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&v); err != nil {
		return fmt.Errorf("schema version: %w", err)
	}
	if v == schemaVersion {
		return nil
	}
	tx, err := x.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	defer tx.Rollback()
	if v != 0 {
		x.log.Info("task index: schema changed, emptying the index", "from", v, "to", schemaVersion)
		if err := dropAll(ctx, tx); err != nil {
			return err
		}
	}
	if err := execAll(ctx, tx, schema); err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, schemaVersion)); err != nil {
		return fmt.Errorf("schema version: %w", err)
	}
	return tx.Commit()
}

// dropAll drops every table of the database.
func dropAll(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`)
	if err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	var stmts []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return fmt.Errorf("list tables: %w", err)
		}
		stmts = append(stmts, `DROP TABLE IF EXISTS "`+strings.ReplaceAll(name, `"`, `""`)+`"`)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	if err := execAll(ctx, tx, stmts); err != nil {
		return fmt.Errorf("drop tables: %w", err)
	}
	return nil
}

func execAll(ctx context.Context, tx *sql.Tx, stmts []string) error {
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the database. The Index is not usable afterwards.
func (x *Index) Close() error {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	x.closeStmts()
	if x.get != nil {
		x.get.Close()
	}
	var errs []error
	for _, db := range []*sql.DB{x.r, x.w} {
		if db != nil {
			if err := db.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("task index: close: %w", errs[0])
	}
	return nil
}
