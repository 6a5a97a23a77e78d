package cluster

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// ForwardPath is the route of forwarded invocations on every node's API.
const ForwardPath = "/nimbus/v1/cluster/invoke"

// Headers of a forwarded invocation. A request without a valid signature
// (made with the key every node derives from the shared node key) is
// refused: an outside client cannot forge one.
const (
	HeaderFrom      = "X-Nimbus-Forwarded-By"
	HeaderDate      = "X-Nimbus-Forward-Date"
	HeaderSignature = "X-Nimbus-Forward-Signature"
	// HeaderNotRun marks the answer of a node that did not run the
	// invocation (no free warm instance any more, another version): the
	// sender runs it itself.
	HeaderNotRun = "X-Nimbus-Not-Run"
)

// MaxSkew is how far a forward's date may be from the receiver's clock;
// a signature is accepted once within it.
const MaxSkew = 30 * time.Second

// Invoker runs an invocation on this node (observe.Invoker).
type Invoker interface {
	Invoke(ctx context.Context, fn *nimbus.Function, req nimbus.Invocation) (nimbus.Result, error)
	Warm(name string) int
}

// Engine is what the Forwarder needs of the node's engine.
type Engine interface {
	// Free reports the WarmKey of fn's version here and whether one of
	// its instances has a free slot.
	Free(fn *nimbus.Function) (key string, free bool, err error)
	// Hold takes a free warm instance of the version whose WarmKey is
	// key, or fails at once (nothing started, nothing queued): the
	// returned context makes the invocation run on it, and release gives
	// it back, reporting whether an invocation used it.
	Hold(ctx context.Context, fn *nimbus.Function, key string) (_ context.Context, release func() (used bool), err error)
}

// ForwarderConfig wires a Forwarder.
type ForwarderConfig struct {
	Members *Membership
	Local   Invoker
	Engine  Engine
	// Resolve loads a function version ("" for $LATEST) on a node that
	// receives a forward (registry.Resolve).
	Resolve func(ctx context.Context, name, version string) (*nimbus.Function, error)
	// Key signs and checks forwards: the same on every node (derived from
	// the node key), at least 32 bytes.
	Key    []byte
	Client *http.Client // nil: one of the Forwarder's own
	Now    func() time.Time
	Logger *slog.Logger
}

// Forwarder is the node's Invoker when it is part of a cluster: a
// synchronous invocation that finds no free warm instance here goes to a
// peer that advertises one, and a peer's forward runs here, on a warm
// instance or not at all. Everything else runs locally, as without it.
type Forwarder struct {
	cfg    ForwarderConfig
	client *http.Client
	log    *slog.Logger

	mu     sync.Mutex
	seen   map[string]time.Time // signatures accepted within MaxSkew: no replay
	pruned time.Time            // when seen was last pruned
	skip   map[string]time.Time // peers that could not be reached: not asked until then

	// Forwarded and Fallbacks count the invocations sent to a peer and
	// those a peer gave back (run here instead), for tests and metrics.
	Forwarded, Fallbacks atomic.Int64
}

// NewForwarder returns a Forwarder.
func NewForwarder(cfg ForwarderConfig) (*Forwarder, error) {
	if cfg.Members == nil || cfg.Local == nil || cfg.Engine == nil || cfg.Resolve == nil {
		return nil, errors.New("cluster: the forwarder needs Members, Local, Engine and Resolve")
	}
	if len(cfg.Key) < 32 {
		return nil, errors.New("cluster: the forwarding key must be at least 32 bytes")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := cfg.Client
	if c == nil {
		c = &http.Client{Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		}}
	}
	return &Forwarder{cfg: cfg, client: c, log: cfg.Logger, seen: make(map[string]time.Time), skip: make(map[string]time.Time)}, nil
}

// Warm reports the running instances of a function's pool (a function's
// name, or name:version) in the cluster: this node's, and those the other
// nodes advertised in their last heartbeats (provisioned concurrency is
// spread across the nodes: Share).
func (f *Forwarder) Warm(name string) int {
	return f.cfg.Local.Warm(name) + f.cfg.Members.PeersRunning(name)
}

// forwardable: synchronous invocations of the Invoke API and function
// URLs, answered whole (a streamed answer is not relayed between nodes).
func forwardable(req *nimbus.Invocation) bool {
	return (req.Trigger == nimbus.TriggerAPI || req.Trigger == nimbus.TriggerURL) &&
		req.Stream == nil && (req.HTTP == nil || req.HTTP.Respond == nil)
}

// poolOf is engine.PoolID.
func poolOf(fn *nimbus.Function) string {
	if fn.Version == "" {
		return fn.Name
	}
	return fn.Name + ":" + fn.Version
}

// Invoke runs req here, or on a peer when this node has no free warm
// instance of fn's version and a peer advertises one: least loaded first,
// each peer asked at most once, and here (a cold start if need be) when
// every peer asked gave it back unrun. It never runs an invocation twice:
// a peer that took it and did not answer makes it fail.
func (f *Forwarder) Invoke(ctx context.Context, fn *nimbus.Function, req nimbus.Invocation) (nimbus.Result, error) {
	if !forwardable(&req) || !f.cfg.Members.PeersWarm(poolOf(fn)) {
		return f.cfg.Local.Invoke(ctx, fn, req)
	}
	key, free, err := f.cfg.Engine.Free(fn)
	if err != nil || free {
		return f.cfg.Local.Invoke(ctx, fn, req)
	}
	const maxTries = 2
	tried := 0
	for _, p := range f.cfg.Members.Candidates(key) {
		if tried == maxTries {
			break
		}
		if f.unreachable(p.ID) {
			continue
		}
		tried++
		res, ran, err := f.forward(ctx, p, fn, key, &req)
		if ran {
			f.Forwarded.Add(1)
			return res, err
		}
		if err != nil {
			f.log.Debug("cluster: forward not taken", nimbus.LogFunction, fn.Name, "node", p.ID, nimbus.LogErr, err)
		}
		if ctx.Err() != nil {
			return nimbus.Result{}, ctx.Err()
		}
	}
	if tried > 0 {
		f.Fallbacks.Add(1)
	}
	return f.cfg.Local.Invoke(ctx, fn, req)
}

// skipFor is how long a peer that could not be reached is not asked again:
// its heartbeat's TTL, by which it is gone if it is dead.
const skipFor = DefaultTTL

// unreachable reports whether peer id failed to take a connection lately.
func (f *Forwarder) unreachable(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	until, ok := f.skip[id]
	if ok && f.cfg.Now().After(until) {
		delete(f.skip, id)
		return false
	}
	return ok
}

func (f *Forwarder) markUnreachable(id string) {
	f.mu.Lock()
	f.skip[id] = f.cfg.Now().Add(skipFor)
	f.mu.Unlock()
}

// The wire format of a forward.
type (
	forwardRequest struct {
		Function   string         `json:"function"`
		Version    string         `json:"version,omitempty"`
		Key        string         `json:"key"`
		Invocation wireInvocation `json:"invocation"`
	}
	wireInvocation struct {
		RequestID     string           `json:"requestId"`
		Payload       []byte           `json:"payload,omitempty"`
		ClientContext string           `json:"clientContext,omitempty"`
		TraceID       string           `json:"traceId,omitempty"`
		Trigger       string           `json:"trigger"`
		Lineage       string           `json:"lineage,omitempty"`
		HTTP          *wireHTTPRequest `json:"http,omitempty"`
	}
	wireHTTPRequest struct {
		Method   string      `json:"method"`
		Path     string      `json:"path"`
		Header   http.Header `json:"header,omitempty"`
		Body     []byte      `json:"body,omitempty"`
		RemoteIP string      `json:"remoteIp,omitempty"`
	}
	forwardResponse struct {
		Payload   []byte                `json:"payload,omitempty"`
		Err       *nimbus.FunctionError `json:"functionError,omitempty"`
		Unhandled bool                  `json:"unhandled,omitempty"`
		LogTail   []byte                `json:"logTail,omitempty"`
		HTTP      *nimbus.HTTPResponse  `json:"http,omitempty"`
		Report    nimbus.Report         `json:"report"`
		// Error is the error of an invocation that ran but did not end
		// (its caller went away, the node closed).
		Error string `json:"error,omitempty"`
	}
)

// forward sends req to peer. ran says the peer took it (then res and err
// are its outcome); !ran means it certainly did not run there.
func (f *Forwarder) forward(ctx context.Context, peer Member, fn *nimbus.Function, key string, req *nimbus.Invocation) (res nimbus.Result, ran bool, err error) {
	fr := forwardRequest{Function: fn.Name, Version: fn.Version, Key: key, Invocation: wireInvocation{
		RequestID: req.RequestID, Payload: req.Payload, ClientContext: req.ClientContext, TraceID: req.TraceID,
		Trigger: req.Trigger, Lineage: req.Lineage,
	}}
	if h := req.HTTP; h != nil {
		fr.Invocation.HTTP = &wireHTTPRequest{Method: h.Method, Path: h.Path, Header: h.Header, Body: h.Body, RemoteIP: h.RemoteIP}
	}
	body, err := json.Marshal(&fr)
	if err != nil {
		return res, false, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, peer.Address+ForwardPath, bytes.NewReader(body))
	if err != nil {
		return res, false, err
	}
	hr.Header.Set("Content-Type", "application/json")
	Sign(hr.Header, f.cfg.Key, f.cfg.Members.Self(), f.cfg.Now(), body)
	var wrote atomic.Bool
	hr = hr.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				wrote.Store(true)
			}
		},
	}))
	resp, err := f.client.Do(hr)
	if err != nil {
		if !wrote.Load() {
			if ctx.Err() == nil {
				f.markUnreachable(peer.ID)
			}
			return res, false, err // never reached the peer whole: it cannot have run
		}
		if ctx.Err() != nil {
			return res, true, ctx.Err()
		}
		return res, true, nimbus.Errorf(nimbus.ErrUnavailable,
			"the invocation was forwarded to node %s (%s), which did not answer: whether it ran is unknown (%v)", peer.ID, peer.Address, err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // the connection is reused
		resp.Body.Close()
	}()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		if resp.StatusCode == http.StatusUnauthorized {
			f.log.Warn("cluster: a peer refused this node's forward: do all nodes have the same node key?", "node", peer.ID, "answer", string(b))
		}
		return res, false, fmt.Errorf("node %s answered %d: %s", peer.ID, resp.StatusCode, bytes.TrimSpace(b))
	}
	var out forwardResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&out); err != nil {
		return res, true, nimbus.Errorf(nimbus.ErrUnavailable, "the answer of node %s to a forwarded invocation was cut: %v", peer.ID, err)
	}
	res = nimbus.Result{Payload: out.Payload, Err: out.Err, LogTail: out.LogTail, HTTP: out.HTTP, Report: out.Report}
	if res.Err != nil {
		res.Err.Unhandled = out.Unhandled
	}
	if out.Error != "" {
		return res, true, nimbus.Errorf(nimbus.ErrUnavailable, "node %s: %s", peer.ID, out.Error)
	}
	return res, true, nil
}

// Sign sets the headers that authenticate a forward from node from at now.
func Sign(h http.Header, key []byte, from string, now time.Time, body []byte) {
	date := strconv.FormatInt(now.UnixMilli(), 10)
	h.Set(HeaderFrom, from)
	h.Set(HeaderDate, date)
	h.Set(HeaderSignature, signature(key, from, date, body))
}

func signature(key []byte, from, date string, body []byte) string {
	sum := sha256.Sum256(body)
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "nimbus-forward-v1\n%s\n%s\n%s\n%s", ForwardPath, from, date, hex.EncodeToString(sum[:]))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// verify checks a forward's signature, its date and that it was not
// accepted before.
func (f *Forwarder) verify(h http.Header, body []byte) error {
	from, date, sig := h.Get(HeaderFrom), h.Get(HeaderDate), h.Get(HeaderSignature)
	if from == "" || date == "" || sig == "" {
		return errors.New("a forwarded invocation must be signed by a node of the cluster")
	}
	ms, err := strconv.ParseInt(date, 10, 64)
	if err != nil {
		return errors.New("the forward's date is not a number of milliseconds")
	}
	now := f.cfg.Now()
	if d := now.Sub(time.UnixMilli(ms)); d > MaxSkew || d < -MaxSkew {
		return fmt.Errorf("the forward's date is %s from this node's clock (at most %s)", d.Round(time.Millisecond), MaxSkew)
	}
	if !hmac.Equal([]byte(sig), []byte(signature(f.cfg.Key, from, date, body))) {
		return errors.New("the forward's signature does not match: the nodes of a cluster need the same node key")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if now.After(f.pruned.Add(time.Second)) { // once a second, not per request
		f.pruned = now
		for s, t := range f.seen {
			if now.Sub(t) > 2*MaxSkew {
				delete(f.seen, s)
			}
		}
	}
	if _, dup := f.seen[sig]; dup {
		return errors.New("this forward was received before: a replay is refused")
	}
	f.seen[sig] = now
	return nil
}

// maxForwardBody bounds a forward's body: a 6 MB payload in base64, and
// the rest.
const maxForwardBody = 9 << 20

// ServeHTTP receives a peer's forward: it runs the invocation on a free warm
// instance of the same version, through the local invoker (its record is
// this node's), and never forwards it again; without one it answers 409
// with X-Nimbus-Not-Run and runs nothing.
func (f *Forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		httpError(w, http.StatusMethodNotAllowed, "only POST")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxForwardBody))
	if err != nil {
		httpError(w, http.StatusRequestEntityTooLarge, "the forward's body is too large or cut: "+err.Error())
		return
	}
	if err := f.verify(r.Header, body); err != nil {
		httpError(w, http.StatusUnauthorized, err.Error())
		return
	}
	var fr forwardRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fr); err != nil || fr.Function == "" || fr.Key == "" || fr.Invocation.RequestID == "" ||
		!(fr.Invocation.Trigger == nimbus.TriggerAPI || fr.Invocation.Trigger == nimbus.TriggerURL) {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("a forward needs a function, a key, a request id and a synchronous trigger (%v)", err))
		return
	}
	notRun := func(msg string) {
		w.Header().Set(HeaderNotRun, "1")
		httpError(w, http.StatusConflict, msg)
	}
	fn, err := f.cfg.Resolve(r.Context(), fr.Function, fr.Version)
	if err != nil {
		notRun(err.Error())
		return
	}
	ctx, release, err := f.cfg.Engine.Hold(r.Context(), fn, fr.Key)
	if err != nil {
		notRun(err.Error())
		return
	}
	in := fr.Invocation
	req := nimbus.Invocation{RequestID: in.RequestID, Payload: in.Payload, ClientContext: in.ClientContext, TraceID: in.TraceID, Trigger: in.Trigger, Lineage: in.Lineage}
	if h := in.HTTP; h != nil {
		req.HTTP = &nimbus.HTTPRequest{Method: h.Method, Path: h.Path, Header: h.Header, Body: h.Body, RemoteIP: h.RemoteIP}
	}
	res, err := f.cfg.Local.Invoke(ctx, fn, req)
	if !release() {
		// Refused before it ran (a recursion limit): the sender runs it
		// and gets the same answer itself.
		msg := "not run"
		if err != nil {
			msg = err.Error()
		}
		notRun(msg)
		return
	}
	out := forwardResponse{Payload: res.Payload, Err: res.Err, LogTail: res.LogTail, HTTP: res.HTTP, Report: res.Report}
	if res.Err != nil {
		out.Unhandled = res.Err.Unhandled
	}
	if err != nil {
		out.Error = err.Error()
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&out)
}

func httpError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}
