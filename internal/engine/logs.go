package engine

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
)

// Log sizes.
const (
	tailBytes    = 4096      // X-Amz-Log-Result: the last 4 KB of an invocation's log
	maxLineBytes = 256 << 10 // longer lines are split, as Lambda does
	readChunk    = 64 << 10
	// defaultLogBytes is how much log text a function keeps in memory.
	defaultLogBytes = 4 << 20
)

// LogRecord is one line of a function's log.
type LogRecord struct {
	Time      time.Time `json:"time"`
	Function  string    `json:"function"`
	RequestID string    `json:"requestId,omitempty"`
	Line      string    `json:"line"`
}

// LogStore keeps the recent log lines of each function in memory and lets
// readers follow them.
type LogStore struct {
	maxBytes int
	mu       sync.Mutex
	funcs    map[string]*funcLog
}

type funcLog struct {
	recs  []LogRecord
	bytes int
	subs  map[chan LogRecord]struct{}
}

// NewLogStore keeps up to maxBytes of log text per function (0: 4 MiB).
func NewLogStore(maxBytes int) *LogStore {
	if maxBytes <= 0 {
		maxBytes = defaultLogBytes
	}
	return &LogStore{maxBytes: maxBytes, funcs: make(map[string]*funcLog)}
}

func (s *LogStore) get(fn string) *funcLog {
	l := s.funcs[fn]
	if l == nil {
		l = &funcLog{subs: make(map[chan LogRecord]struct{})}
		s.funcs[fn] = l
	}
	return l
}

// Append adds a record; followers that cannot keep up miss it.
func (s *LogStore) Append(rec LogRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.get(rec.Function)
	l.recs = append(l.recs, rec)
	l.bytes += len(rec.Line)
	if l.bytes > s.maxBytes {
		// Drop the oldest quarter at once, so trimming costs O(1) per
		// line on average.
		drop := 0
		for l.bytes > s.maxBytes*3/4 && drop < len(l.recs)-1 {
			l.bytes -= len(l.recs[drop].Line)
			drop++
		}
		l.recs = append(l.recs[:0], l.recs[drop:]...)
	}
	for ch := range l.subs {
		select {
		case ch <- rec:
		default:
		}
	}
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
	recs := l.recs
	if limit >= 0 && len(recs) > limit {
		recs = recs[len(recs)-limit:]
	}
	return append([]LogRecord(nil), recs...)
}

// Follow returns the records appended from now on, until cancel is called.
func (s *LogStore) Follow(fn string) (<-chan LogRecord, func()) {
	ch := make(chan LogRecord, 1024)
	s.mu.Lock()
	s.get(fn).subs[ch] = struct{}{}
	s.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.get(fn).subs, ch)
			s.mu.Unlock()
		})
	}
}

// output captures an instance's stdout and stderr (one pipe, so their order
// is kept) and attributes each line to the request in flight.
type output struct {
	store *LogStore
	fn    string
	r, w  *os.File
	raw   syscall.RawConn
	done  chan struct{}

	mu      sync.Mutex // guards everything below; held while consuming the pipe
	reqID   string
	partial []byte
	tail    []byte
	buf     []byte
}

func newOutput(store *LogStore, fn string) (*output, error) {
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
	o := &output{store: store, fn: fn, r: r, w: w, raw: raw, done: make(chan struct{}), buf: make([]byte, readChunk)}
	go o.loop()
	return o, nil
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
			o.emitLocked(string(o.partial))
			o.partial = o.partial[:0]
		} else {
			o.emitLocked(string(b[:i]))
		}
		b = b[i+1:]
	}
}

func (o *output) flushLocked() {
	if len(o.partial) > 0 {
		o.emitLocked(string(o.partial))
		o.partial = o.partial[:0]
	}
}

func (o *output) emitLocked(line string) {
	for len(line) > maxLineBytes {
		o.emitLocked(line[:maxLineBytes])
		line = line[maxLineBytes:]
	}
	o.store.Append(LogRecord{Time: time.Now(), Function: o.fn, RequestID: o.reqID, Line: line})
	o.tail = append(o.tail, line...)
	o.tail = append(o.tail, '\n')
	if over := len(o.tail) - tailBytes; over > 0 {
		o.tail = append(o.tail[:0], o.tail[over:]...)
	}
}

// begin starts attributing output to requestID. The tail keeps what the
// instance printed since the last request ended, so a cold start's tail
// shows its init output too.
func (o *output) begin(requestID string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reqID = requestID
	o.emitLocked("START RequestId: " + requestID + " Version: $LATEST")
}

// line adds a platform line to the current request's log.
func (o *output) line(text string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.emitLocked(text)
}

// end closes the request's log with END and REPORT lines and returns its
// tail.
func (o *output) end(requestID, report string) []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.flushLocked()
	o.emitLocked("END RequestId: " + requestID)
	o.emitLocked("REPORT RequestId: " + requestID + "\t" + report)
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
	tail := append([]byte(nil), o.tail...)
	o.tail = o.tail[:0]
	return tail
}

// close waits for the reader (all writers are gone once the instance
// exited) and closes the pipe.
func (o *output) close() {
	o.closeWriter()
	select {
	case <-o.done:
	case <-time.After(2 * time.Second):
		// A stray process kept the pipe open: stop reading anyway.
	}
	o.r.Close()
}
