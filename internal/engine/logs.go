package engine

import (
	"bytes"
	"container/list"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"
)

// Log sizes.
const (
	tailBytes    = 4096      // X-Amz-Log-Result: the last 4 KB of an invocation's log
	maxLineBytes = 256 << 10 // longer lines are split, as Lambda does
	readChunk    = 64 << 10
	// DefaultLogBytes is how much log a function keeps in memory, and
	// DefaultTotalLogBytes how much all the functions of a node keep.
	DefaultLogBytes      = 4 << 20
	DefaultTotalLogBytes = 256 << 20
	// recordOverhead estimates the memory of a record beyond its line's
	// bytes: the LogRecord itself (72 bytes) and the slack of the slice
	// holding it.
	recordOverhead = 160
	// DefaultLogRate is how many bytes of output per second an instance
	// may write to its log (with a burst of twice as many); the rest is
	// dropped, and a marker line says how much (output.markLocked).
	DefaultLogRate = 5 << 20
)

// LogSink receives every record a LogStore keeps (a durable store of
// function logs). Add must not block: it is called on the path that reads
// an instance's output. Forget tells it a function was deleted.
type LogSink interface {
	Add(LogRecord)
	Forget(fn string)
}

// LogRecord is one line of a function's log.
type LogRecord struct {
	Time      time.Time `json:"time"`
	Function  string    `json:"function"`
	RequestID string    `json:"requestId,omitempty"`
	Line      string    `json:"line"`
}

// size is what a record is counted for against the caps.
func (r *LogRecord) size() int { return len(r.Line) + recordOverhead }

// LogStore keeps the recent log lines of each function in memory and lets
// readers follow them. Memory is capped per function and in total; over the
// total, the least recently written function loses its oldest records
// first. A function's log goes with the function (Forget).
type LogStore struct {
	perFunction, total int

	sink        atomic.Pointer[LogSink] // SetSink; nil: none
	rateDropped atomic.Uint64           // bytes of output over instances' log rate

	mu    sync.Mutex
	funcs map[string]*funcLog
	lru   list.List // of *funcLog with records, least recently written first
	bytes int       // of every function's records
}

// funcLog is one function's log. Instances hold it while they run, so
// that the lines of a deleted function's last instances are dropped
// rather than shown to a new function of the same name.
type funcLog struct {
	recs  []LogRecord // recs[head:] are kept, oldest first
	head  int
	bytes int
	subs  map[chan LogRecord]struct{}
	el    *list.Element // in LogStore.lru while it has records
	gone  bool          // forgotten: appends are dropped
}

// NewLogStore keeps up to perFunction bytes of log per function and total
// bytes for all functions together (0: DefaultLogBytes and
// DefaultTotalLogBytes). A record counts its line's bytes plus an estimate
// of its own overhead.
func NewLogStore(perFunction, total int) *LogStore {
	if perFunction <= 0 {
		perFunction = DefaultLogBytes
	}
	if total <= 0 {
		total = DefaultTotalLogBytes
	}
	return &LogStore{perFunction: min(perFunction, total), total: total, funcs: make(map[string]*funcLog)}
}

// logOf returns fn's log, creating it. Called with mu held.
func (s *LogStore) logOf(fn string) *funcLog {
	l := s.funcs[fn]
	if l == nil {
		l = &funcLog{subs: make(map[chan LogRecord]struct{})}
		s.funcs[fn] = l
	}
	return l
}

// SetSink makes the store pass every record it keeps to k, and the
// functions it forgets.
func (s *LogStore) SetSink(k LogSink) { s.sink.Store(&k) }

// RateDropped is how many bytes of instances' output were dropped over
// their log rate (Config.LogRate), since the store was made.
func (s *LogStore) RateDropped() uint64 { return s.rateDropped.Load() }

// toSink passes rec to the sink, if there is one.
func (s *LogStore) toSink(rec LogRecord) {
	if k := s.sink.Load(); k != nil {
		(*k).Add(rec)
	}
}

// handle returns fn's log for an instance to append to.
func (s *LogStore) handle(fn string) *funcLog {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logOf(fn)
}

// Append adds a record; followers that cannot keep up miss it.
func (s *LogStore) Append(rec LogRecord) {
	s.mu.Lock()
	ok := s.appendLocked(s.logOf(rec.Function), rec)
	s.mu.Unlock()
	if ok {
		s.toSink(rec)
	}
}

// appendTo adds a record to l, unless l's function was forgotten.
func (s *LogStore) appendTo(l *funcLog, rec LogRecord) {
	s.mu.Lock()
	ok := s.appendLocked(l, rec)
	s.mu.Unlock()
	if ok {
		s.toSink(rec)
	}
}

// appendLocked adds rec to l and reports whether it did (not when l's
// function was forgotten).
func (s *LogStore) appendLocked(l *funcLog, rec LogRecord) bool {
	if l.gone {
		return false
	}
	l.recs = append(l.recs, rec)
	l.bytes += rec.size()
	s.bytes += rec.size()
	if l.el == nil {
		l.el = s.lru.PushBack(l)
	} else {
		s.lru.MoveToBack(l.el)
	}
	for l.bytes > s.perFunction && len(l.recs)-l.head > 1 {
		s.dropOldest(l)
	}
	for s.bytes > s.total && s.lru.Len() > 0 {
		s.dropOldest(s.lru.Front().Value.(*funcLog))
	}
	for ch := range l.subs {
		select {
		case ch <- rec:
		default:
		}
	}
	return true
}

// dropOldest drops l's oldest record. Called with mu held, l not empty.
func (s *LogStore) dropOldest(l *funcLog) {
	r := &l.recs[l.head]
	l.bytes -= r.size()
	s.bytes -= r.size()
	*r = LogRecord{}
	l.head++
	switch {
	case l.head == len(l.recs):
		l.recs, l.head = nil, 0
		s.lru.Remove(l.el)
		l.el = nil
	case l.head > len(l.recs)/2:
		// Compacting once half is dropped keeps dropping O(1) per record.
		n := copy(l.recs, l.recs[l.head:])
		clear(l.recs[n:])
		l.recs, l.head = l.recs[:n], 0
	}
}

// Forget drops a function's log (the function was deleted): its records go,
// its followers' channels close, and lines its remaining instances write
// are dropped.
func (s *LogStore) Forget(fn string) {
	if k := s.sink.Load(); k != nil {
		(*k).Forget(fn)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.funcs[fn]
	if l == nil {
		return
	}
	delete(s.funcs, fn)
	s.bytes -= l.bytes
	if l.el != nil {
		s.lru.Remove(l.el)
	}
	*l = funcLog{gone: true, subs: l.subs}
	for ch := range l.subs {
		close(ch)
	}
	l.subs = nil
}

// Read returns up to limit of a function's most recent records (a negative
// limit: all), oldest first.
func (s *LogStore) Read(fn string, limit int) []LogRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.funcs[fn]
	if l == nil {
		return nil
	}
	recs := l.recs[l.head:]
	if limit >= 0 && len(recs) > limit {
		recs = recs[len(recs)-limit:]
	}
	return append([]LogRecord(nil), recs...)
}

// Follow returns the records appended from now on, until cancel is called.
// The channel is closed when the function's log is forgotten (Forget).
func (s *LogStore) Follow(fn string) (<-chan LogRecord, func()) {
	ch := make(chan LogRecord, 1024)
	s.mu.Lock()
	l := s.logOf(fn)
	l.subs[ch] = struct{}{}
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(l.subs, ch) // nil after Forget: a no-op
		s.mu.Unlock()
	}
}

// output captures an instance's stdout and stderr (one pipe, so their order
// is kept) and attributes each line to the request in flight.
type output struct {
	store *LogStore
	log   *funcLog
	fn    string
	sys   sysLog
	r, w  *os.File
	raw   syscall.RawConn
	done  chan struct{}
	wg    *sync.WaitGroup // counts the reader goroutine
	// started: the reader goroutine runs (start).
	started bool

	mu      sync.Mutex // guards everything below; held while consuming the pipe
	reqID   string
	partial []byte
	tail    []byte
	buf     []byte
	// limit bounds the bytes of output lines per second (nil: no bound);
	// dropped counts the bytes of the lines it refused since the last
	// marker, written at most once per second (markedAt).
	limit    *rate.Limiter
	dropped  int64
	markedAt time.Time
}

// newLogLimiter returns the limiter of an instance's output for a rate in
// bytes per second (0: DefaultLogRate; negative: none).
func newLogLimiter(bytesPerSecond float64) *rate.Limiter {
	switch {
	case bytesPerSecond < 0:
		return nil
	case bytesPerSecond == 0:
		bytesPerSecond = DefaultLogRate
	}
	return rate.NewLimiter(rate.Limit(bytesPerSecond), max(int(2*bytesPerSecond), maxLineBytes+1))
}

// newOutput returns an output whose reader goroutine wg counts; sys writes
// its platform lines.
func newOutput(store *LogStore, fn string, sys sysLog, limit *rate.Limiter, wg *sync.WaitGroup) (*output, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("log pipe: %w", err)
	}
	raw, err := r.SyscallConn()
	if err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("log pipe: %w", err)
	}
	o := &output{store: store, log: store.handle(fn), fn: fn, sys: sys, r: r, w: w, raw: raw, done: make(chan struct{}), wg: wg, buf: make([]byte, readChunk), limit: limit}
	return o, nil
}

// start starts the reader goroutine, once the instance started: on src
// if not nil (the instance's own output pipe, sandbox.OutputOf), else on
// the pipe whose write end was its stdout and stderr.
func (o *output) start(src *os.File) error {
	if src != nil {
		raw, err := src.SyscallConn()
		if err != nil {
			_ = src.Close()
			return fmt.Errorf("log pipe: %w", err)
		}
		o.closeWriter()
		_ = o.r.Close()
		o.r, o.raw = src, raw
	}
	o.started = true
	o.wg.Go(o.loop)
	return nil
}

// closeWriter drops the parent's copy of the write end once the instance
// has its own.
func (o *output) closeWriter() {
	if o.w != nil {
		o.w.Close()
		o.w = nil
	}
}

// loop consumes the pipe until every writer has closed it. Reading happens
// under mu, so drain can tell when all output written so far is consumed.
func (o *output) loop() {
	defer close(o.done)
	for {
		eof := false
		err := o.raw.Read(func(fd uintptr) bool {
			o.mu.Lock()
			defer o.mu.Unlock()
			n, err := syscall.Read(int(fd), o.buf)
			if errors.Is(err, syscall.EAGAIN) {
				return false // wait for data
			}
			if n <= 0 {
				eof = true
				return true
			}
			o.consumeLocked(o.buf[:n])
			return true
		})
		if err != nil || eof {
			o.mu.Lock()
			o.flushLocked()
			o.mu.Unlock()
			return
		}
	}
}

// drain consumes whatever the instance has written so far. A runtime
// writes its log before it posts its response, so after a response the
// whole invocation's output is in the pipe.
func (o *output) drain() {
	_ = o.raw.Control(func(fd uintptr) {
		o.mu.Lock()
		defer o.mu.Unlock()
		for {
			n, err := syscall.Read(int(fd), o.buf)
			if err != nil || n <= 0 {
				return
			}
			o.consumeLocked(o.buf[:n])
		}
	})
}

func (o *output) consumeLocked(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			o.partial = append(o.partial, b...)
			if len(o.partial) >= maxLineBytes {
				o.flushLocked()
			}
			return
		}
		if len(o.partial) > 0 {
			o.partial = append(o.partial, b[:i]...)
			o.outputLocked(o.partial)
			o.partial = o.partial[:0]
		} else {
			o.outputLocked(b[:i])
		}
		b = b[i+1:]
	}
}

func (o *output) flushLocked() {
	if len(o.partial) > 0 {
		o.outputLocked(o.partial)
		o.partial = o.partial[:0]
	}
}

// outputLocked adds a line the instance wrote, unless it is over the
// instance's log rate: then its bytes are counted, and a marker line says
// how many were dropped, once a second.
func (o *output) outputLocked(line []byte) {
	if o.limit == nil {
		o.emitLocked(string(line))
		return
	}
	now := time.Now()
	if o.limit.AllowN(now, len(line)+1) {
		o.markLocked(now, false)
		o.emitLocked(string(line))
		return
	}
	o.dropped += int64(len(line) + 1)
	o.store.rateDropped.Add(uint64(len(line) + 1))
	o.markLocked(now, false)
}

// markLocked writes the marker of the bytes dropped since the last one,
// if a second has passed since it (or now, with force).
func (o *output) markLocked(now time.Time, force bool) {
	if o.dropped == 0 || (!force && now.Sub(o.markedAt) < time.Second) {
		return
	}
	o.emitLocked(fmt.Sprintf("[nimbus] log rate limit: dropped %d bytes in the last second", o.dropped))
	o.dropped, o.markedAt = 0, now
}

func (o *output) emitLocked(line string) {
	for len(line) > maxLineBytes {
		o.emitLocked(line[:maxLineBytes])
		line = line[maxLineBytes:]
	}
	o.store.appendTo(o.log, LogRecord{Time: time.Now(), Function: o.fn, RequestID: o.reqID, Line: line})
	o.tail = append(o.tail, line...)
	o.tail = append(o.tail, '\n')
	if over := len(o.tail) - tailBytes; over > 0 {
		o.tail = append(o.tail[:0], o.tail[over:]...)
	}
}

// platformLocked adds a platform line ("": one filtered out).
func (o *output) platformLocked(line string) {
	if line != "" {
		o.emitLocked(line)
	}
}

// begin starts attributing output to requestID. The tail keeps what the
// instance printed since the last request ended, so a cold start's tail
// shows its init output too.
func (o *output) begin(requestID string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reqID = requestID
	o.platformLocked(o.sys.start(requestID))
}

// timedOut adds the timeout message to the current request's log.
func (o *output) timedOut(requestID string, timeout int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.platformLocked(o.sys.timedOut(requestID, timeout))
}

// end closes the request's log with END and REPORT lines and returns its
// tail.
func (o *output) end(requestID string, r invokeReport) []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.flushLocked()
	o.markLocked(time.Now(), true)
	o.platformLocked(o.sys.end(requestID, r))
	o.platformLocked(o.sys.report(requestID, r))
	tail := append([]byte(nil), o.tail...)
	o.tail = o.tail[:0]
	o.reqID = ""
	return tail
}

// takeTail returns and clears the tail (the output of a failed init).
func (o *output) takeTail() []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.flushLocked()
	o.markLocked(time.Now(), true)
	tail := append([]byte(nil), o.tail...)
	o.tail = o.tail[:0]
	return tail
}

// close waits for the reader (all writers are gone once the instance
// exited) and closes the pipe.
func (o *output) close() {
	o.closeWriter()
	if o.started {
		select {
		case <-o.done:
		case <-time.After(2 * time.Second):
			// A stray process kept the pipe open: stop reading anyway.
		}
	}
	o.r.Close()
}
