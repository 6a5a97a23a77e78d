package records

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus"
	natsstore "github.com/nimbus-serverless/nimbus/internal/store/nats"
)

// Limits of Filter.Limit.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
)

// Filter selects a function's records for List.
type Filter struct {
	Function string
	// Since and Until bound the start time (zero: unbounded).
	Since, Until time.Time
	// Statuses keeps records with one of these statuses (empty: all).
	Statuses []string
	// Limit is the most records to return, 1 to MaxLimit.
	Limit int
	// Cursor continues a listing: the NextCursor of the previous page.
	Cursor string
}

// Check validates f. Errors: nimbus.ErrInvalid.
func (f *Filter) Check() error {
	if f.Limit < 1 || f.Limit > MaxLimit {
		return nimbus.Invalidf("limit must be 1 to %d, not %d", MaxLimit, f.Limit)
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && f.Until.Before(f.Since) {
		return nimbus.Invalidf("until (%s) is before since (%s)", f.Until.Format(time.RFC3339), f.Since.Format(time.RFC3339))
	}
	for _, st := range f.Statuses {
		if !validStatus(st) {
			return nimbus.Invalidf("status must be one of %s (or failed), not %q", strings.Join(Statuses, ", "), st)
		}
	}
	if _, _, err := parseCursor(f.Cursor); err != nil {
		return err
	}
	return nil
}

func validStatus(s string) bool {
	for _, v := range Statuses {
		if s == v {
			return true
		}
	}
	return false
}

// matches reports whether r passes f's filters.
func (f *Filter) matches(r *Record) bool {
	if !f.Since.IsZero() && r.StartTime.Before(f.Since) || !f.Until.IsZero() && r.StartTime.After(f.Until) {
		return false
	}
	if len(f.Statuses) == 0 {
		return true
	}
	for _, st := range f.Statuses {
		if r.Status == st {
			return true
		}
	}
	return false
}

// cursor is where a page ends: before record idx of the message seq.
func cursor(seq uint64, idx int) string {
	return "s" + strconv.FormatUint(seq, 10) + "." + strconv.Itoa(idx)
}

func parseCursor(c string) (seq uint64, idx int, err error) {
	if c == "" {
		return 0, 0, nil
	}
	s, i, ok := strings.Cut(strings.TrimPrefix(c, "s"), ".")
	if ok && strings.HasPrefix(c, "s") {
		seq, err1 := strconv.ParseUint(s, 10, 64)
		idx, err2 := strconv.Atoi(i)
		if err1 == nil && err2 == nil && seq > 0 && idx >= 0 {
			return seq, idx, nil
		}
	}
	return 0, 0, nimbus.Invalidf("cursor %q is not one this API gave: pass the NextCursor of the previous page", c)
}

// maxSkew is how far apart the clocks of the nodes that write may be.
const maxSkew = 5 * time.Minute

// List returns f's records, newest first (in the order they were written),
// at most f.Limit, and the cursor of the next page ("" when there is none).
// Errors: nimbus.ErrInvalid, nimbus.ErrUnavailable.
func (s *Store) List(ctx context.Context, f Filter) ([]Record, string, error) {
	if err := f.Check(); err != nil {
		return nil, "", err
	}
	atSeq, atIdx, _ := parseCursor(f.Cursor)
	subj := s.subj + f.Function
	last, err := s.st.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return []Record{}, "", nil
	}
	if err != nil {
		return nil, "", s.unavailable("list", err)
	}
	hi := last.Sequence
	if atSeq > 0 {
		hi = min(hi, atSeq)
	}
	out := []Record{}
	span := uint64(16)
	for spans := 0; hi > 0; spans++ {
		if spans == maxSpans {
			// A listing that filters out almost everything would read
			// the whole retention in one call: this page ends here,
			// and its cursor goes on from the next message down.
			return out, cursor(hi, math.MaxInt32), nil
		}
		lo := uint64(1)
		if hi > span {
			lo = hi - span + 1
		}
		var stop bool
		read := 0
		err := readRange(ctx, s.st, subj, lo, hi, func(m natsstore.Msg) {
			read += len(m.Data)
			if stop {
				return
			}
			recs := decode(m.Data)
			end := len(recs)
			if m.Seq == atSeq {
				end = min(end, atIdx)
			}
			for i := end - 1; i >= 0; i-- {
				r := &recs[i]
				if !f.matches(r) {
					continue
				}
				if len(out) == f.Limit {
					stop = true
					f.Cursor = cursor(m.Seq, i+1)
					return
				}
				out = append(out, *r)
			}
			// Messages are stored in order: one stored before Since (with
			// room for the nodes' clocks) and every older one hold only
			// records that started before it.
			if !f.Since.IsZero() && m.Time.Before(f.Since.Add(-maxSkew)) {
				stop = true
				f.Cursor = ""
			}
		}, true)
		if err != nil {
			return nil, "", s.unavailable("list", err)
		}
		if stop {
			return out, f.Cursor, nil
		}
		hi = lo - 1
		if read < spanBytes {
			span = min(2*span, 4096) // a span holds what one read may keep in memory
		}
	}
	return out, "", nil
}

// A List call reads at most maxSpans spans of messages, each read whole
// into memory; a span doubles (from 16 messages, up to 4096) while the last
// one held under spanBytes.
var maxSpans = 32 // a variable for tests

const spanBytes = 1 << 20

// decode reads a message's records (JSON lines), skipping damaged ones.
func decode(data []byte) []Record {
	var out []Record
	for line := range bytes.SplitSeq(data, []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		var r Record
		if json.Unmarshal(line, &r) == nil {
			out = append(out, r)
		}
	}
	return out
}

// readRange calls each with the messages on subj (a filter, wildcards
// allowed) with sequences lo to hi, in order, or in reverse order when
// backwards.
func readRange(ctx context.Context, st jetstream.Stream, subj string, lo, hi uint64, each func(natsstore.Msg), backwards bool) error {
	var got []natsstore.Msg
	err := natsstore.ReadRange(ctx, st, subj, lo, hi, func(m natsstore.Msg) bool {
		if backwards {
			got = append(got, m)
		} else {
			each(m)
		}
		return true
	})
	for i := len(got) - 1; i >= 0 && err == nil; i-- {
		each(got[i])
	}
	return err
}
