package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/async"
	"github.com/nimbus-serverless/nimbus/internal/async/taskindex"
)

// records is the async.Records: the task stream, and this node's index of
// it.
type records struct {
	b     *Backend
	idx   *taskindex.Index
	stops chan string

	mu     sync.Mutex
	cc     jetstream.ConsumeContext // the stream follower
	gen    int                      // its generation: a failed apply starts another
	failed chan struct{}            // closed when the follower of gen failed
	behind bool                     // refollow runs

	// recent holds the records this node wrote that the index may not
	// have yet (its follower applies them a few milliseconds later): a
	// node reads what it wrote at once, and a write costs no index
	// transaction on the submit path.
	recentMu sync.Mutex
	recent   map[string]*nimbus.Task

	// position is the stream sequence the index has applied; progress is
	// closed (and replaced) when it moves.
	posMu    sync.Mutex
	position uint64
	progress chan struct{}
}

// listWait bounds how long a listing waits for the index to have this
// node's own latest records.
const listWait = 2 * time.Second

// maxRecent bounds recent; past it (the follower is far behind) a node's
// own records show when the follower gets to them.
const maxRecent = 100_000

// sweepEvery is how often records past the retention leave the index (the
// stream drops them by itself).
const sweepEvery = time.Minute

func openRecords(ctx context.Context, b *Backend) (*records, error) {
	st, err := b.cfg.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: b.names.tasks, Subjects: []string{b.names.taskSubj + ">"}, Retention: jetstream.LimitsPolicy,
		Storage: jetstream.FileStorage, Replicas: b.cfg.Replicas, MaxAge: b.cfg.Retention, Description: "Nimbus async task records (batches)",
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", b.names.tasks, err)
	}
	if err := os.MkdirAll(b.cfg.IndexDir, 0o700); err != nil {
		return nil, fmt.Errorf("task index dir: %w", err)
	}
	idx, err := taskindex.Open(filepath.Join(b.cfg.IndexDir, b.cfg.Prefix+"-tasks.db"), taskindex.Options{Logger: b.log})
	if err != nil {
		return nil, err
	}
	r := &records{b: b, idx: idx, stops: make(chan string, 1024), recent: make(map[string]*nimbus.Task),
		progress: make(chan struct{})}
	if err := r.follow(ctx, st.CachedInfo()); err != nil {
		_ = idx.Close()
		return nil, err
	}
	b.goBackground(r.sweepLoop)
	return r, nil
}

// follow brings the index up to date with the stream and keeps it so. An
// index built from another stream (the store was replaced) starts over.
func (r *records) follow(ctx context.Context, info *jetstream.StreamInfo) error {
	identity := info.Config.Name + "@" + info.Created.UTC().Format(time.RFC3339Nano)
	stream, seq, err := r.idx.Position()
	if err != nil {
		return err
	}
	if stream != identity || seq > info.State.LastSeq {
		if err := r.idx.Reset(identity); err != nil {
			return err
		}
		seq = 0
	}
	r.moved(seq)
	cfg := jetstream.OrderedConsumerConfig{}
	if seq > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq+1
	}
	cons, err := r.b.cfg.JS.OrderedConsumer(ctx, r.b.names.tasks, cfg)
	if err != nil {
		return fmt.Errorf("follow the task stream: %w", err)
	}
	last := info.State.LastSeq
	caught := make(chan struct{})
	var once sync.Once
	if last <= seq {
		once.Do(func() { close(caught) })
	}
	r.mu.Lock()
	r.gen++
	gen, failed := r.gen, make(chan struct{})
	r.failed = failed
	r.mu.Unlock()
	cc, err := cons.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			return
		}
		r.apply(gen, m.Data(), md.Sequence.Stream)
		if md.Sequence.Stream >= last {
			once.Do(func() { close(caught) })
		}
	})
	if err != nil {
		return fmt.Errorf("follow the task stream: %w", err)
	}
	r.mu.Lock()
	r.cc = cc
	r.mu.Unlock()
	select {
	case <-caught:
		return nil
	case <-failed:
		return errors.New("load task records: the index could not take them")
	case <-ctx.Done():
		cc.Stop()
		return fmt.Errorf("load task records: %w", ctx.Err())
	}
}

// apply merges a batch of records from the stream. When the index cannot
// take it (its disk is full), following stops and starts again, from
// where the index stands, once it can: no record is skipped.
func (r *records) apply(gen int, data []byte, seq uint64) {
	r.mu.Lock()
	current := gen == r.gen
	r.mu.Unlock()
	if !current {
		return // a follower given up after a failure
	}
	var recs []*nimbus.Task
	if err := json.Unmarshal(data, &recs); err != nil {
		r.b.log.Warn("async: skip an unreadable task record batch", "seq", seq, nimbus.LogErr, err)
		recs = nil
	}
	recs = valid(recs)
	changed, err := r.idx.Apply(recs, seq)
	if err == nil {
		r.applied(recs)
		r.moved(seq)
	}
	if err != nil {
		r.b.log.Error("async: index task records; following the task stream again once the index takes them",
			"seq", seq, nimbus.LogErr, err)
		r.mu.Lock()
		if gen == r.gen {
			r.gen++ // this follower's later batches are ignored
			r.cc.Stop()
			close(r.failed)
			if !r.behind {
				r.behind = true
				r.b.goBackground(r.refollow)
			}
		}
		r.mu.Unlock()
		return
	}
	r.notifyStops(changed)
}

// refollow follows the stream again after a failed apply, trying until it
// works or the backend closes.
func (r *records) refollow(ctx context.Context) {
	wait := 100 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
		st, err := r.b.cfg.JS.Stream(ctx, r.b.names.tasks)
		if err == nil {
			err = r.follow(ctx, st.CachedInfo())
		}
		if err == nil {
			r.mu.Lock()
			r.behind = false
			r.mu.Unlock()
			r.b.log.Info("async: the task index follows the task stream again")
			return
		}
		r.b.log.Warn("async: follow the task stream again", nimbus.LogErr, err)
	}
}

func valid(recs []*nimbus.Task) []*nimbus.Task {
	out := recs[:0]
	for _, t := range recs {
		if t != nil && t.ID != "" && t.Function != "" {
			out = append(out, t)
		}
	}
	return out
}

// applyLocal makes this node's own records readable at once (recent),
// before the stream brings them to the index.
func (r *records) applyLocal(recs []*nimbus.Task) {
	var changed []*nimbus.Task
	r.recentMu.Lock()
	for _, t := range recs {
		key := async.TaskKey(t.Function, t.ID)
		cur := r.recent[key]
		if cur == nil {
			// Not in recent: the index may have a newer record already
			// (this node's, applied, or another node's).
			if stored, ok, err := r.idx.Get(t.Function, t.ID); err == nil && ok {
				cur = &stored
			}
		}
		if cur != nil && !t.Supersedes(cur) {
			continue
		}
		if len(r.recent) >= maxRecent && r.recent[key] == nil {
			continue
		}
		r.recent[key] = t
		changed = append(changed, t)
	}
	r.recentMu.Unlock()
	r.notifyStops(changed)
}

// moved notes that the index has applied the stream up to seq.
func (r *records) moved(seq uint64) {
	r.posMu.Lock()
	defer r.posMu.Unlock()
	if seq > r.position {
		r.position = seq
		close(r.progress)
		r.progress = make(chan struct{})
	}
}

// caughtUp waits (up to listWait) until the index has the records this
// node wrote before the call: a node lists what it wrote.
func (r *records) caughtUp(ctx context.Context) {
	want := r.b.lastTaskSeq.Load()
	timeout := time.NewTimer(listWait)
	defer timeout.Stop()
	for {
		r.posMu.Lock()
		at, progress := r.position, r.progress
		r.posMu.Unlock()
		if at >= want {
			return
		}
		select {
		case <-progress:
		case <-timeout.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// applied forgets the recent records the index now has (or has newer).
func (r *records) applied(recs []*nimbus.Task) {
	r.recentMu.Lock()
	defer r.recentMu.Unlock()
	for _, t := range recs {
		key := async.TaskKey(t.Function, t.ID)
		if cur := r.recent[key]; cur != nil && (t.Equal(cur) || !cur.Supersedes(t)) {
			delete(r.recent, key)
		}
	}
}

func (r *records) notifyStops(changed []*nimbus.Task) {
	for _, t := range changed {
		if t.Status != nimbus.TaskStopping && t.Status != nimbus.TaskStopped {
			continue
		}
		select {
		case r.stops <- async.TaskKey(t.Function, t.ID):
		case <-r.b.ctx.Done():
			return
		}
	}
}

// Record implements async.Records.
func (r *records) Record(ctx context.Context, recs []*nimbus.Task) error {
	return r.b.write(ctx, recs, nil)
}

// RecordLater implements async.Records.
func (r *records) RecordLater(t *nimbus.Task) {
	tb, err := json.Marshal(t)
	if err != nil {
		return
	}
	r.applyLocal([]*nimbus.Task{t})
	r.b.w.post(r.b.names.taskSubj+t.Function, tb)
}

// Task implements async.Records.
func (r *records) Task(_ context.Context, fn, id string) (nimbus.Task, error) {
	r.recentMu.Lock()
	mine := r.recent[async.TaskKey(fn, id)]
	r.recentMu.Unlock()
	if mine != nil {
		// The newest known: a newer record from the stream would have
		// taken it out of recent (applied).
		return *mine, nil
	}
	t, ok, err := r.idx.Get(fn, id)
	switch {
	case err != nil:
		return t, fmt.Errorf("read task %s: %w", id, err)
	case !ok:
		return t, nimbus.Errorf(nimbus.ErrNotFound, "Task %s of function %s not found (records are kept for %s)", id, fn, r.b.cfg.Retention)
	}
	return t, nil
}

// Tasks implements async.Records.
func (r *records) Tasks(ctx context.Context, fn string, o async.ListOptions) ([]nimbus.Task, string, error) {
	r.caughtUp(ctx)
	return r.idx.List(fn, o)
}

// Counts implements async.Records.
func (r *records) Counts(ctx context.Context, fn string) (map[string]int, error) {
	r.caughtUp(ctx)
	return r.idx.Counts(fn)
}

// Stops implements async.Records.
func (r *records) Stops() <-chan string { return r.stops }

func (r *records) sweepLoop(ctx context.Context) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := r.idx.Sweep(r.b.cfg.Now().Add(-r.b.cfg.Retention)); err != nil {
				r.b.log.Warn("async: sweep the task index", nimbus.LogErr, err)
			}
		}
	}
}

// close stops following the stream, waits (within ctx) until no record is
// being applied, and closes the index.
func (r *records) close(ctx context.Context) error {
	r.mu.Lock()
	cc := r.cc
	r.gen++
	r.mu.Unlock()
	if cc != nil {
		cc.Stop()
		select {
		case <-cc.Closed():
		case <-ctx.Done():
			return fmt.Errorf("async: stop following the task stream: %w", ctx.Err())
		}
	}
	return r.idx.Close()
}
