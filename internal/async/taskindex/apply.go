package taskindex

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// sweepBatch is how many records one transaction of Sweep deletes, so that a
// large sweep lets Apply in between.
const sweepBatch = 1000

// Apply merges records in one transaction: a record replaces the stored
// record of its task (function and id) only when it supersedes it
// (nimbus.Task.Supersedes), and a later record of the batch is merged with
// the outcome of the earlier ones. seq is the stream sequence the records
// came from (0: none, for a node's own records applied before the stream
// delivers them); it is remembered when above the stored position, in the
// same transaction. Apply returns, in order, the records that took effect.
// A nil record, or one without a function or an id, is skipped and logged.
// Errors: nimbus.ErrInvalid for a seq above math.MaxInt64; others from
// SQLite, when nothing was applied.
func (x *Index) Apply(recs []*nimbus.Task, seq uint64) ([]*nimbus.Task, error) {
	if seq > math.MaxInt64 {
		return nil, fmt.Errorf("task index: apply: sequence %d: %w", seq, nimbus.ErrInvalid)
	}
	x.wmu.Lock()
	defer x.wmu.Unlock()
	took, err := x.applyTx(recs, int64(seq))
	if err != nil {
		return nil, fmt.Errorf("task index: apply: %w", err)
	}
	x.cache.store(took)
	return took, nil
}

func (x *Index) applyTx(recs []*nimbus.Task, seq int64) ([]*nimbus.Task, error) {
	ctx := context.Background()
	tx, err := x.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	m, err := x.newMerger(ctx, tx)
	if err != nil {
		return nil, err
	}
	defer m.close()
	var took []*nimbus.Task
	for _, t := range recs {
		ok, err := m.merge(t)
		if err != nil {
			return nil, err
		}
		if ok {
			took = append(took, t)
		}
	}
	if seq > 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE position SET seq = ?1 WHERE ?1 > seq`, seq); err != nil {
			return nil, fmt.Errorf("position: %w", err)
		}
	}
	return took, tx.Commit()
}

// merger merges the records of one Apply transaction.
type merger struct {
	ctx          context.Context
	x            *Index
	load, upsert *sql.Stmt
	batch        map[key]*nimbus.Task // what this transaction wrote
}

// The writer's statements, prepared once (see Index.prepare).
const (
	loadSQL   = `SELECT rec FROM tasks WHERE fn = ? AND id = ?`
	upsertSQL = `INSERT INTO tasks (fn, id, status, created, updated, rec)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (fn, id) DO UPDATE SET status = excluded.status, created = excluded.created,
			updated = excluded.updated, rec = excluded.rec`
)

func (x *Index) newMerger(ctx context.Context, tx *sql.Tx) (*merger, error) {
	return &merger{ctx: ctx, x: x, load: tx.StmtContext(ctx, x.load), upsert: tx.StmtContext(ctx, x.upsert),
		batch: make(map[key]*nimbus.Task)}, nil
}

func (m *merger) close() {
	m.load.Close()
	m.upsert.Close()
}

// merge writes t unless the stored record supersedes it, and reports
// whether it did.
func (m *merger) merge(t *nimbus.Task) (bool, error) {
	if t == nil {
		m.x.log.Warn("task index: skip a null record")
		return false, nil
	}
	if t.Function == "" || t.ID == "" {
		m.x.log.Warn("task index: skip a record without a function or an id",
			nimbus.LogFunction, t.Function, nimbus.LogTask, t.ID)
		return false, nil
	}
	k := key{t.Function, t.ID}
	cur, err := m.current(k)
	if err != nil {
		return false, err
	}
	if cur != nil && (!t.Supersedes(cur) || t.Equal(cur)) {
		return false, nil // older, or the same record again (a node's own, back from the stream)
	}
	rec, err := json.Marshal(t)
	if err != nil { // a time outside years 0-9999: skipped, lest it stop the stream
		m.x.log.Warn("task index: skip a record that cannot be encoded",
			nimbus.LogFunction, t.Function, nimbus.LogTask, t.ID, nimbus.LogErr, err)
		return false, nil
	}
	if _, err := m.upsert.ExecContext(m.ctx, t.Function, t.ID, t.Status, nanos(t.Created), nanos(t.Updated), rec); err != nil {
		return false, fmt.Errorf("write task %s: %w", t.ID, err)
	}
	m.batch[k] = t
	return true, nil
}

// current returns the stored record of a task, nil when there is none:
// this transaction's, else the cache's (which is the database's, as the
// Index serializes writes), else the database's.
func (m *merger) current(k key) (*nimbus.Task, error) {
	if t, ok := m.batch[k]; ok {
		return t, nil
	}
	if t, ok := m.x.cache.peek(k); ok {
		return &t, nil
	}
	t, found, err := scanTask(m.load.QueryRowContext(m.ctx, k.fn, k.id))
	if err != nil || !found {
		return nil, err
	}
	return &t, nil
}

// scanTask decodes the rec column of a row; found is false when there is
// no row.
func scanTask(row *sql.Row) (t nimbus.Task, found bool, err error) {
	var rec []byte
	if err := row.Scan(&rec); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return t, false, nil
		}
		return t, false, fmt.Errorf("read task: %w", err)
	}
	if err := json.Unmarshal(rec, &t); err != nil {
		return t, false, fmt.Errorf("decode task: %w", err)
	}
	return t, true, nil
}

// Sweep deletes the records last updated before cutoff, in transactions of
// at most sweepBatch records, and returns how many it deleted (also when it
// fails partway).
func (x *Index) Sweep(cutoff time.Time) (int, error) {
	c, total := nanos(cutoff), 0
	for {
		n, err := x.sweepOnce(c)
		total += n
		if err != nil {
			return total, fmt.Errorf("task index: sweep: %w", err)
		}
		if n < sweepBatch {
			return total, nil
		}
	}
}

func (x *Index) sweepOnce(cutoff int64) (int, error) {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	ctx := context.Background()
	tx, err := x.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	keys, err := deleteBefore(ctx, tx, cutoff)
	if err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	x.cache.remove(keys)
	return len(keys), nil
}

// deleteBefore deletes up to sweepBatch records updated before cutoff and
// returns their keys.
func deleteBefore(ctx context.Context, tx *sql.Tx, cutoff int64) ([]key, error) {
	rows, err := tx.QueryContext(ctx, `DELETE FROM tasks WHERE rowid IN
		(SELECT rowid FROM tasks WHERE updated < ? LIMIT ?) RETURNING fn, id`, cutoff, sweepBatch)
	if err != nil {
		return nil, err
	}
	var keys []key
	for rows.Next() {
		var k key
		if err := rows.Scan(&k.fn, &k.id); err != nil {
			rows.Close()
			return nil, err
		}
		keys = append(keys, k)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, err
	}
	return keys, nil
}

// Position returns the identity of the stream the index follows ("" for a
// new or reset index) and the last stream sequence applied.
func (x *Index) Position() (stream string, seq uint64, err error) {
	var s int64
	err = x.r.QueryRowContext(context.Background(), `SELECT stream, seq FROM position WHERE id = 0`).Scan(&stream, &s)
	if err != nil {
		return "", 0, fmt.Errorf("task index: position: %w", err)
	}
	return stream, uint64(s), nil
}

// Reset empties the index and makes stream its identity, at sequence 0 (the
// caller does so when the stream is not the one the index was built from).
func (x *Index) Reset(stream string) error {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	if err := x.resetTx(stream); err != nil {
		return fmt.Errorf("task index: reset: %w", err)
	}
	x.cache.purge()
	if err := x.prepare(); err != nil { // the tables were made again
		return fmt.Errorf("task index: reset: %w", err)
	}
	return nil
}

func (x *Index) resetTx(stream string) error {
	ctx := context.Background()
	tx, err := x.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := execAll(ctx, tx, slices.Concat(drop, schema)); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE position SET stream = ?, seq = 0 WHERE id = 0`, stream); err != nil {
		return err
	}
	return tx.Commit()
}

var minTime, maxTime = time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64)

// nanos is t in Unix nanoseconds, for the ordering columns; a time outside
// int64's range (years 1678 to 2262) counts as that range's end. The
// records themselves keep their times exactly.
func nanos(t time.Time) int64 {
	switch {
	case t.Before(minTime):
		return math.MinInt64
	case t.After(maxTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}
