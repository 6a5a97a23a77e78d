package async

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// Event is one asynchronous invocation as it waits in the queue.
type Event struct {
	ID       string          `json:"id"` // the task id, also the request id
	Function string          `json:"fn"`
	Payload  json.RawMessage `json:"p"`
	Created  time.Time       `json:"c"`           // first submitted: the event's age counts from here
	Attempts int             `json:"a,omitempty"` // attempts made so far
	// NotBefore delays a retry: the queue does not hand the event out
	// earlier.
	NotBefore time.Time `json:"nb,omitzero"`
	TraceID   string    `json:"tr,omitempty"`
	// TraceParent is the submitter's span context (traceparent), which
	// the invocation's span links to.
	TraceParent string `json:"tp,omitempty"`
	// Qualifier is the version or alias the event was sent to ("": the
	// function's $LATEST); an alias routes the event when it runs.
	Qualifier string `json:"q,omitempty"`
	// Keyed: the submitter named the task id (an idempotency key). A
	// backend stores the task record of such an event only once the event
	// is stored: a record without its event would make the submitter's
	// retry with the same id find the task and store nothing.
	Keyed bool `json:"-"`
	// executed is the version the current attempt runs.
	executed string
}

// Claim is a queue message that this node holds: its events run here and
// no other node takes them until the claim is done or released, or this
// node stops renewing it (it died), when any node may claim it again.
type Claim struct {
	Events []*Event
	// Handle is the backend's own (a message sequence and a lease).
	Handle any
}

// Queue is where events wait for a node to run them. It is durable, keeps
// one FIFO per function (an event whose NotBefore is in the future waits
// without holding up the ones behind it) and is shared by every node: any
// node may claim any function's next message. It needs no resource per
// function.
type Queue interface {
	// Put stores the records, then the events, durably, in one commit
	// (an event never exists without its record), and tells every node
	// that the events' functions have work. Events may share a message.
	// Errors: nimbus.ErrUnavailable when the store cannot write in time.
	Put(ctx context.Context, recs []*nimbus.Task, evs []*Event) error
	// Claim takes the oldest due message of fn that no live node holds.
	// When none is due it returns nil and when the next one will be (the
	// zero time when fn has nothing waiting at all).
	Claim(ctx context.Context, fn string) (*Claim, time.Time, error)
	// Done removes a claimed message: every event in it has a durable
	// outcome.
	Done(ctx context.Context, c *Claim) error
	// Release hands a claimed message back at once, for another try
	// (this node is stopping or could not store an outcome).
	Release(ctx context.Context, c *Claim) error
	// Lost reports whether the claim was taken over by another node
	// because this node did not renew it in time; its events may run
	// there too, so this node stops starting them.
	Lost(c *Claim) bool
	// Pending lists the functions with events waiting, including those
	// held by a node that has stopped renewing its claims.
	Pending(ctx context.Context) ([]string, error)
	// Wakeups delivers the name of a function when any node puts events
	// for it (best effort: Pending finds what a wake-up missed).
	Wakeups() <-chan string
}

// Records keeps the task records: the latest of each task in the
// retention window, as written by any node (a few milliseconds late for
// another node's writes). When two records of a task race, the one that
// nimbus.Task.Supersedes the other wins.
type Records interface {
	// Record stores records durably. Errors: nimbus.ErrUnavailable.
	Record(ctx context.Context, recs []*nimbus.Task) error
	// RecordLater stores a record without waiting (a record whose loss
	// only delays information, such as Running).
	RecordLater(rec *nimbus.Task)
	// Task returns a task's latest record. Errors: nimbus.ErrNotFound.
	Task(ctx context.Context, fn, id string) (nimbus.Task, error)
	// Tasks lists a page of a function's tasks, oldest first, and the
	// marker of the next page ("" at the end). It costs the page, not the
	// number of tasks.
	Tasks(ctx context.Context, fn string, o ListOptions) ([]nimbus.Task, string, error)
	// Counts returns how many of fn's tasks are in each status.
	Counts(ctx context.Context, fn string) (map[string]int, error)
	// Stops delivers the key (function/id) of a task that any node asked
	// to stop (a Stopping or Stopped record).
	Stops() <-chan string
}

// Letters keeps dead letters: events that failed for good.
type Letters interface {
	// Bury stores a dead letter durably. Errors: nimbus.ErrUnavailable.
	Bury(ctx context.Context, dl *nimbus.DeadLetter) error
	// Letters lists up to limit of fn's dead letters with a Seq above
	// after, oldest first.
	Letters(ctx context.Context, fn string, after uint64, limit int) ([]nimbus.DeadLetter, error)
	// Remove deletes a dead letter; one already gone is not an error.
	Remove(ctx context.Context, seq uint64) error
}

// Backend is the Async Service's storage. internal/async/nats implements
// it on NATS JetStream (what the node runs), internal/async/mem in memory
// (tests); internal/async/asynctest is the suite both pass.
type Backend interface {
	Queue
	Records
	Letters
	// Close stops the backend's goroutines, waiting for them within ctx.
	Close(ctx context.Context) error
}

// ListOptions filter and page a function's tasks.
type ListOptions struct {
	Status       string    // "" for every status
	Since, Until time.Time // by creation time; zero: open
	Limit        int       // 1..1000, default 100
	Marker       string    // the last task id of the previous page
}

// TaskKey names a task across functions, as Records.Stops delivers it.
func TaskKey(fn, id string) string { return fn + "/" + id }
