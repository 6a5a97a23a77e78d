package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/async"
)

// queue is the async.Queue: the events stream, read per function with
// direct gets, and the claims bucket.
type queue struct {
	b       *Backend
	events  jetstream.Stream
	claims  jetstream.KeyValue // mu; see bucket
	boot    string             // this run of the node
	sub     *nats.Subscription
	wakeups chan string

	mu      sync.Mutex
	cursors map[string]*cursor // by function: where its scan stands
	held    map[uint64]*held   // claims this node holds, by message sequence
}

// cursor is how far a function's messages have been looked at. Messages
// before next were claimed, or skipped: not due yet, or held by another
// node. The scan goes back to rewindTo at rewindAt, when the first of
// those may be claimable.
type cursor struct {
	next     uint64
	rewindTo uint64
	rewindAt time.Time
}

func (c *cursor) skip(seq uint64, until time.Time) {
	if c.rewindAt.IsZero() || until.Before(c.rewindAt) {
		c.rewindAt = until
	}
	c.rewindTo = min(c.rewindTo, seq)
}

// held is a claim of this node.
type held struct {
	fn       string
	seq      uint64
	rev      uint64 // of its entry in the claims bucket
	lost     bool
	settled  bool // done or released: no longer renewed
	takeover bool // taken over from an earlier claim
}

// lease is a claim's entry in the claims bucket.
type lease struct {
	Node  string    `json:"node"`
	Boot  string    `json:"boot"`
	Until time.Time `json:"until"`
}

// maxScan bounds the messages one Claim looks at.
const maxScan = 1000

// evAge is how long an event may wait: the longest maximum event age, and
// slack for the last retry's back-off.
const evAge = nimbus.MaxEventAgeSeconds*time.Second + time.Hour

func openQueue(ctx context.Context, b *Backend) (*queue, error) {
	q := &queue{b: b, boot: uuid.NewString(), wakeups: make(chan string, 1024),
		cursors: make(map[string]*cursor), held: make(map[uint64]*held)}
	var err error
	q.events, err = b.cfg.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: b.names.events, Subjects: []string{b.names.evSubj + ">"}, Retention: jetstream.LimitsPolicy,
		Storage: jetstream.FileStorage, Replicas: q.b.cfg.Replicas, MaxAge: evAge, AllowDirect: true,
		Description: "Nimbus async events: one FIFO per function; a message is deleted when its events are done",
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", b.names.events, err)
	}
	if err := q.openClaims(ctx); err != nil {
		return nil, err
	}
	if err := q.migrate(ctx); err != nil {
		return nil, err
	}
	if err := q.freeOwnClaims(ctx); err != nil {
		return nil, err
	}
	q.sub, err = b.cfg.NC.Subscribe(b.names.wake, q.onWake)
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", b.names.wake, err)
	}
	b.goBackground(q.renewLoop)
	return q, nil
}

// migrate moves the events left in the previous design's queue (a work
// queue stream with a consumer per function) into this one and deletes
// it. Each message is published with an id of its own, so a migration cut
// short and done again moves nothing twice.
func (q *queue) migrate(ctx context.Context) error {
	old, err := q.b.cfg.JS.Stream(ctx, q.b.names.oldEvents)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look for the previous queue %s: %w", q.b.names.oldEvents, err)
	}
	info := old.CachedInfo()
	if info.Config.Retention != jetstream.WorkQueuePolicy {
		return fmt.Errorf("stream %s is not Nimbus's previous async queue; remove it or choose another --nats-prefix", q.b.names.oldEvents)
	}
	moved := 0
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := old.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("migrate the previous queue: %w", err)
		}
		fn, ok := strings.CutPrefix(m.Subject, q.b.names.oldEvSubj)
		if !ok {
			continue
		}
		_, err = q.b.cfg.JS.Publish(ctx, q.b.names.evSubj+fn, m.Data,
			jetstream.WithMsgID(fmt.Sprintf("migrate-%s-%d", info.Created.UTC().Format(time.RFC3339Nano), seq)))
		if err != nil {
			return fmt.Errorf("migrate the previous queue: %w", err)
		}
		moved++
	}
	if err := q.b.cfg.JS.DeleteStream(ctx, q.b.names.oldEvents); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("delete the previous queue: %w", err)
	}
	q.b.log.Info("async: moved the previous design's queue", "stream", q.b.names.oldEvents, "messages", moved)
	return nil
}

// openClaims creates (or finds) the claims bucket. It is in memory: a
// restart of the server that holds it (the embedded one, after a full
// disk) loses it, and the queue makes it again.
func (q *queue) openClaims(ctx context.Context) error {
	kv, err := q.b.cfg.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: q.b.names.claims, History: 1, Storage: jetstream.MemoryStorage, Replicas: q.b.cfg.Replicas, TTL: 2 * q.b.cfg.ClaimTTL,
		Description: "Nimbus async claims: which node holds which queue message",
	})
	if err != nil {
		return fmt.Errorf("claims bucket %s: %w", q.b.names.claims, err)
	}
	q.mu.Lock()
	q.claims = kv
	q.mu.Unlock()
	return nil
}

// claimsGone makes the claims bucket again when err says it is gone; ok:
// try again.
func (q *queue) claimsGone(ctx context.Context, err error) (ok bool) {
	// A write to a bucket that is gone finds no stream to answer it.
	if !errors.Is(err, jetstream.ErrStreamNotFound) && !errors.Is(err, jetstream.ErrBucketNotFound) &&
		!errors.Is(err, jetstream.ErrNoStreamResponse) && !strings.Contains(err.Error(), "stream not found") {
		return false
	}
	if err := q.openClaims(ctx); err != nil {
		q.b.log.Warn("async: make the claims bucket again", nimbus.LogErr, err)
		return false
	}
	return true
}

func (q *queue) bucket() jetstream.KeyValue {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.claims
}

// freeOwnClaims deletes the claims a previous run of this node left: that
// run died without releasing them, and waiting for them to lapse would hold
// its events back for a claim's lifetime.
func (q *queue) freeOwnClaims(ctx context.Context) error {
	keys, err := q.bucket().ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("list claims: %w", err)
	}
	freed := 0
	for key := range keys.Keys() {
		e, err := q.bucket().Get(ctx, key)
		if err != nil {
			continue
		}
		var l lease
		if json.Unmarshal(e.Value(), &l) == nil && l.Node == q.b.cfg.NodeID && l.Boot != q.boot {
			if q.bucket().Delete(ctx, key, jetstream.LastRevision(e.Revision())) == nil {
				freed++
			}
		}
	}
	if freed > 0 {
		q.b.log.Info("async: freed the claims of this node's previous run", "claims", freed)
	}
	return nil
}

// onWake passes on a wake-up, and has the function's next Claim look
// again at what its scan skipped: a wake-up also follows a release.
func (q *queue) onWake(m *nats.Msg) {
	now := q.b.cfg.Now()
	for fn := range strings.SplitSeq(string(m.Data), "\n") {
		if fn == "" {
			continue
		}
		q.mu.Lock()
		if c := q.cursors[fn]; c != nil && !c.rewindAt.IsZero() {
			c.rewindAt = now
		}
		q.mu.Unlock()
		select {
		case q.wakeups <- fn:
		default: // Pending finds it
		}
	}
}

// announce tells every node (this one too) that fns have new events.
func (q *queue) announce(fns []string) {
	if err := q.b.cfg.NC.Publish(q.b.names.wake, []byte(strings.Join(fns, "\n"))); err != nil {
		q.b.log.Warn("async: announce new events", nimbus.LogErr, err)
	}
}

// Put implements async.Queue.
func (q *queue) Put(ctx context.Context, recs []*nimbus.Task, evs []*async.Event) error {
	return q.b.write(ctx, recs, evs)
}

// Claim implements async.Queue.
func (q *queue) Claim(ctx context.Context, fn string) (*async.Claim, time.Time, error) {
	now := q.b.cfg.Now()
	q.mu.Lock()
	c := q.cursors[fn]
	if c == nil {
		c = &cursor{next: 1, rewindTo: math.MaxUint64}
		q.cursors[fn] = c
	}
	if !c.rewindAt.IsZero() && !now.Before(c.rewindAt) {
		c.next, c.rewindTo, c.rewindAt = min(c.next, c.rewindTo), math.MaxUint64, time.Time{}
	}
	seq := c.next
	q.mu.Unlock()

	subj := q.b.names.evSubj + fn
	for range maxScan {
		m, err := q.events.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, q.scanned(fn, seq, false), nil
		}
		if err != nil {
			return nil, time.Time{}, q.unavailable("read the queue", err)
		}
		seq = m.Sequence + 1
		claim, err := q.consider(ctx, fn, m, now)
		if err != nil || claim != nil {
			q.scanned(fn, seq, claim != nil)
			return claim, time.Time{}, err
		}
	}
	return nil, q.scanned(fn, seq, true), nil
}

// scanned moves fn's cursor to seq and returns when fn should be looked
// at again: the next rewind, now when the scan stopped short (more), or
// the zero time when nothing of fn is waiting.
func (q *queue) scanned(fn string, seq uint64, more bool) time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	c := q.cursors[fn]
	c.next = max(c.next, seq)
	switch {
	case more:
		return q.b.cfg.Now()
	case c.rewindAt.IsZero():
		return time.Time{} // nothing waiting: new messages come after next
	}
	return c.rewindAt
}

// consider claims message m if it is due and free; nil when it is not.
func (q *queue) consider(ctx context.Context, fn string, m *jetstream.RawStreamMsg, now time.Time) (*async.Claim, error) {
	q.mu.Lock()
	_, mine := q.held[m.Sequence]
	q.mu.Unlock()
	if mine {
		return nil, nil
	}
	var evs []*async.Event
	if err := json.Unmarshal(m.Data, &evs); err != nil || len(evs) == 0 {
		q.b.log.Error("async: drop an unreadable queue message", nimbus.LogFunction, fn, "seq", m.Sequence, nimbus.LogErr, err)
		_ = q.events.DeleteMsg(ctx, m.Sequence)
		return nil, nil
	}
	if due := notBefore(evs); due.After(now) {
		q.skip(fn, m.Sequence, due)
		return nil, nil
	}
	h, until, err := q.take(ctx, fn, m.Sequence, now)
	if err != nil || h == nil {
		if h == nil && err == nil {
			q.skip(fn, m.Sequence, until)
		}
		return nil, err
	}
	// A node's Done deletes the message and leaves its claim to lapse, so
	// a new claim is of a message still there; one taken over from a
	// lapsed (or released) claim may be of a message done meanwhile: it
	// counts only if the message is still there.
	if !h.takeover {
		return &async.Claim{Events: evs, Handle: h}, nil
	}
	if _, err := q.events.GetMsg(ctx, m.Sequence); err != nil {
		q.forget(h)
		q.dropClaim(h)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, nil
		}
		return nil, q.unavailable("read the queue", err)
	}
	return &async.Claim{Events: evs, Handle: h}, nil
}

func (q *queue) skip(fn string, seq uint64, until time.Time) {
	q.mu.Lock()
	if c := q.cursors[fn]; c != nil {
		c.skip(seq, until)
	}
	q.mu.Unlock()
}

// notBefore is when a message's events may run: the earliest NotBefore
// (a retry is a message of its own).
func notBefore(evs []*async.Event) time.Time {
	t := evs[0].NotBefore
	for _, ev := range evs[1:] {
		if ev.NotBefore.Before(t) {
			t = ev.NotBefore
		}
	}
	return t
}

// take claims message seq for this node: a new claim, or one that lapsed
// (its node stopped renewing it) or that a previous run of this node left.
// It returns nil and the claim's end when a live node holds it.
func (q *queue) take(ctx context.Context, fn string, seq uint64, now time.Time) (*held, time.Time, error) {
	rev, over, until, err := q.takeOnce(ctx, seq, now)
	if err != nil && q.claimsGone(ctx, err) {
		rev, over, until, err = q.takeOnce(ctx, seq, now)
	}
	if err != nil {
		return nil, time.Time{}, q.unavailable("claim a queue message", err)
	}
	if rev == 0 {
		return nil, until, nil
	}
	h := &held{fn: fn, seq: seq, rev: rev, takeover: over}
	q.mu.Lock()
	q.held[seq] = h
	q.mu.Unlock()
	return h, time.Time{}, nil
}

// takeOnce tries to claim seq: its new revision and whether it took over
// an earlier claim, or 0 and until when the claim of a live node holds it.
func (q *queue) takeOnce(ctx context.Context, seq uint64, now time.Time) (uint64, bool, time.Time, error) {
	kv := q.bucket()
	key := strconv.FormatUint(seq, 10)
	val := q.lease(now)
	rev, err := kv.Create(ctx, key, val)
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return rev, false, time.Time{}, err
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		return 0, false, now.Add(time.Second), nil // gone or unreadable: look again soon
	}
	var l lease
	if json.Unmarshal(e.Value(), &l) == nil && l.Until.After(now) && (l.Node != q.b.cfg.NodeID || l.Boot == q.boot) {
		return 0, false, l.Until, nil
	}
	rev, err = kv.Update(ctx, key, val, e.Revision())
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return 0, false, now.Add(q.b.cfg.ClaimTTL), nil // another node was quicker
	}
	return rev, true, time.Time{}, err
}

func (q *queue) lease(now time.Time) []byte {
	b, _ := json.Marshal(lease{Node: q.b.cfg.NodeID, Boot: q.boot, Until: now.Add(q.b.cfg.ClaimTTL).UTC()})
	return b
}

// handle returns the claim's held entry, or an error for a claim this
// queue did not hand out.
func (q *queue) handle(c *async.Claim) (*held, error) {
	h, ok := c.Handle.(*held)
	if !ok || h == nil {
		return nil, errors.New("async: not a claim of this queue")
	}
	return h, nil
}

// Done implements async.Queue.
func (q *queue) Done(ctx context.Context, c *async.Claim) error {
	h, err := q.handle(c)
	if err != nil {
		return err
	}
	q.forget(h)
	if q.lostLocked(h) {
		return nil // the node that took it over deletes it
	}
	if err := q.events.DeleteMsg(ctx, h.seq); err != nil && !gone(err) {
		q.dropClaim(h) // its events have outcomes: whoever takes it skips them
		return q.unavailable("remove a finished queue message", err)
	}
	// The claim stays until it lapses (the bucket's TTL removes it): a
	// node that read the message before it was deleted then cannot claim
	// it anew (see consider).
	return nil
}

// Release implements async.Queue.
func (q *queue) Release(ctx context.Context, c *async.Claim) error {
	h, err := q.handle(c)
	if err != nil {
		return err
	}
	q.forget(h)
	q.mu.Lock()
	if cur := q.cursors[h.fn]; cur != nil {
		cur.skip(h.seq, q.b.cfg.Now())
	}
	q.mu.Unlock()
	if q.lostLocked(h) {
		return nil
	}
	if err := q.dropClaimCtx(ctx, h); err != nil {
		return err
	}
	q.announce([]string{h.fn}) // other nodes may take it now
	return nil
}

// Lost implements async.Queue.
func (q *queue) Lost(c *async.Claim) bool {
	h, err := q.handle(c)
	return err != nil || q.lostLocked(h)
}

func (q *queue) lostLocked(h *held) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return h.lost
}

// forget stops renewing h.
func (q *queue) forget(h *held) {
	q.mu.Lock()
	h.settled = true
	if q.held[h.seq] == h {
		delete(q.held, h.seq)
	}
	q.mu.Unlock()
}

// dropClaim deletes h's entry so that its message (if it is still there)
// can be claimed at once; a failure only delays that until it lapses.
func (q *queue) dropClaim(h *held) {
	ctx, cancel := context.WithTimeout(context.Background(), q.b.cfg.WriteTimeout)
	defer cancel()
	_ = q.dropClaimCtx(ctx, h)
}

func (q *queue) dropClaimCtx(ctx context.Context, h *held) error {
	q.mu.Lock()
	rev := h.rev
	q.mu.Unlock()
	err := q.bucket().Delete(ctx, strconv.FormatUint(h.seq, 10), jetstream.LastRevision(rev))
	if err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) &&
		!q.claimsGone(ctx, err) {
		return q.unavailable("release a claim", err)
	}
	return nil
}

// renewLoop extends this node's claims every third of their lifetime. A
// claim that another node took over (it was not renewed in time) is lost.
func (q *queue) renewLoop(ctx context.Context) {
	t := time.NewTicker(q.b.cfg.ClaimTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			q.renew(ctx)
		}
	}
}

func (q *queue) renew(ctx context.Context) {
	q.mu.Lock()
	hs := make([]*held, 0, len(q.held))
	for _, h := range q.held {
		hs = append(hs, h)
	}
	q.mu.Unlock()
	for _, h := range hs {
		rctx, cancel := context.WithTimeout(ctx, q.b.cfg.WriteTimeout)
		rev, lost, err := q.renewOne(rctx, h)
		cancel()
		q.mu.Lock()
		switch {
		case h.settled:
			// Done or released while this pass ran: whatever the
			// renewal found is moot.
		case lost:
			h.lost = true
			delete(q.held, h.seq)
			q.b.log.Warn("async: a claim was taken over by another node; its events may run twice",
				nimbus.LogFunction, h.fn, "seq", h.seq)
		case err != nil:
			q.b.log.Warn("async: renew a claim", nimbus.LogFunction, h.fn, "seq", h.seq, nimbus.LogErr, err)
		default:
			h.rev = rev
		}
		q.mu.Unlock()
	}
}

// renewOne extends h. A claim whose entry is gone (the claims bucket was
// lost with a server restart, or it lapsed unseen) is made again; lost
// reports one that another node holds now.
func (q *queue) renewOne(ctx context.Context, h *held) (rev uint64, lost bool, err error) {
	q.mu.Lock()
	cur, settled := h.rev, h.settled
	q.mu.Unlock()
	if settled {
		return 0, false, nil
	}
	key := strconv.FormatUint(h.seq, 10)
	val := q.lease(q.b.cfg.Now())
	rev, err = q.bucket().Update(ctx, key, val, cur)
	if err != nil && q.claimsGone(ctx, err) {
		rev, err = q.bucket().Create(ctx, key, val)
		return rev, errors.Is(err, jetstream.ErrKeyExists), ignoreExists(err)
	}
	if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
		return rev, false, err
	}
	e, gerr := q.bucket().Get(ctx, key)
	switch {
	case errors.Is(gerr, jetstream.ErrKeyNotFound) || errors.Is(gerr, jetstream.ErrKeyDeleted):
		q.mu.Lock()
		settled := h.settled
		q.mu.Unlock()
		if settled {
			return 0, false, nil // its Done dropped the claim: nothing to make again
		}
		rev, err = q.bucket().Create(ctx, key, val)
		return rev, errors.Is(err, jetstream.ErrKeyExists), ignoreExists(err)
	case gerr != nil:
		return 0, false, gerr
	}
	var l lease
	if json.Unmarshal(e.Value(), &l) != nil || l.Node != q.b.cfg.NodeID || l.Boot != q.boot {
		return 0, true, nil
	}
	rev, err = q.bucket().Update(ctx, key, val, e.Revision())
	return rev, false, err
}

func ignoreExists(err error) error {
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil
	}
	return err
}

// Pending implements async.Queue.
func (q *queue) Pending(ctx context.Context) ([]string, error) {
	info, err := q.events.Info(ctx, jetstream.WithSubjectFilter(q.b.names.evSubj+">"))
	if err != nil {
		return nil, q.unavailable("list waiting events", err)
	}
	fns := make([]string, 0, len(info.State.Subjects))
	for subj := range info.State.Subjects {
		if fn, ok := strings.CutPrefix(subj, q.b.names.evSubj); ok {
			fns = append(fns, fn)
		}
	}
	// A function seen again is scanned again from its start, so that
	// messages held by a node that died are found once their claims lapse.
	q.mu.Lock()
	for _, fn := range fns {
		if c := q.cursors[fn]; c != nil {
			c.next = 1
		}
	}
	q.mu.Unlock()
	return fns, nil
}

// Wakeups implements async.Queue.
func (q *queue) Wakeups() <-chan string { return q.wakeups }

// close stops the wake-ups and frees the claims still held, so that
// another node (or this one, restarted) takes their messages at once.
func (q *queue) close(ctx context.Context) error {
	if q.sub != nil {
		_ = q.sub.Unsubscribe()
	}
	q.mu.Lock()
	hs := make([]*held, 0, len(q.held))
	for _, h := range q.held {
		hs = append(hs, h)
	}
	q.held = map[uint64]*held{}
	q.mu.Unlock()
	for _, h := range hs {
		if ctx.Err() != nil {
			break
		}
		_ = q.dropClaimCtx(ctx, h)
	}
	return nil
}

// unavailable wraps a store failure as nimbus.ErrUnavailable.
func (q *queue) unavailable(op string, err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	return nimbus.Errorf(nimbus.ErrUnavailable, "async: %s: %v", op, err)
}
