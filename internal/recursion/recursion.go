// Package recursion stops functions that invoke themselves in a loop, as
// Lambda's recursive loop detection does. Each invocation carries a
// lineage in its X-Ray trace header ("Lineage=<function>:<count>|..."):
// how many times each function already ran in the chain of invocations
// that led to it. A function's instance gets the lineage with its own
// count raised in _X_AMZN_TRACE_ID, and the AWS SDKs send that header
// (X-Amzn-Trace-Id) with every call the function makes, so an Invoke
// from inside a function, or a message sent with the header, carries it
// on. An invocation that would run a function whose RecursiveLoop is
// Terminate (the default) for the Limit+1st time in one chain is refused
// with nimbus.ErrRecursive: the Invoke API answers it with Lambda's
// RecursiveInvocationException, the Async Service makes the event a dead
// letter at once (condition RecursiveInvocationException), and a
// trigger's batch fails as when the function fails.
package recursion

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"

	"github.com/nimbus-serverless/nimbus"
)

// Limit is how many times a function may run in one chain of
// invocations before the next is refused (Lambda's: about 16).
const Limit = 16

// maxEntries bounds a lineage's functions, so that the header stays
// short: past it the ones seen least often are dropped (a loop through
// more functions than this is not detected).
const maxEntries = 8

// Check reads the lineage of req (its TraceID and TraceLinks) and sets
// req.Lineage to what fn's instance is to carry on. Errors:
// nimbus.ErrRecursive when fn ran Limit times in the chain already and its
// RecursiveLoop is not Allow.
func Check(fn *nimbus.Function, req *nimbus.Invocation) error {
	l := parse(req.TraceID)
	for _, link := range req.TraceLinks {
		l = l.merge(parse(link))
	}
	key := Key(fn.Name)
	if l.count(key) >= Limit && fn.RecursiveLoop != nimbus.RecursiveLoopAllow {
		return nimbus.Errorf(nimbus.ErrRecursive,
			"Function %s ran %d times in one chain of invocations, a recursive loop: Nimbus stopped its next invocation (PutFunctionRecursionConfig with RecursiveLoop Allow lets it run on)",
			fn.Name, Limit)
	}
	req.Lineage = l.raise(key).String()
	return nil
}

// Key is a function's name in lineages: 8 hex digits of its hash.
func Key(name string) string {
	h := fnv.New32a()
	h.Write([]byte(name))
	return fmt.Sprintf("%08x", h.Sum32())
}

// Header is traceID with lineage (as Check sets it) as its Lineage field.
func Header(traceID, lineage string) string {
	if lineage == "" || traceID == "" {
		return traceID
	}
	return traceID + ";Lineage=" + lineage
}

// lineage is a chain's counts by function key.
type lineage []entry

type entry struct {
	key   string
	count int
}

// parse reads the Lineage field of an X-Ray trace header; anything
// malformed in it is left out (a client's header is not trusted to be
// well formed, only to be what it says).
func parse(h string) lineage {
	var l lineage
	for part := range strings.SplitSeq(h, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		if k != "Lineage" {
			continue
		}
		for e := range strings.SplitSeq(v, "|") {
			key, n, ok := strings.Cut(e, ":")
			c, err := strconv.Atoi(n)
			if !ok || err != nil || c < 1 || len(key) != 8 || strings.Trim(key, "0123456789abcdef") != "" {
				continue
			}
			l = l.merge(lineage{{key, min(c, Limit+1)}})
		}
	}
	return l
}

func (l lineage) count(key string) int {
	if i := slices.IndexFunc(l, func(e entry) bool { return e.key == key }); i >= 0 {
		return l[i].count
	}
	return 0
}

// merge is l with o's counts, the larger of the two for a function in
// both.
func (l lineage) merge(o lineage) lineage {
	for _, e := range o {
		if i := slices.IndexFunc(l, func(x entry) bool { return x.key == e.key }); i >= 0 {
			l[i].count = max(l[i].count, e.count)
		} else {
			l = append(l, e)
		}
	}
	return l
}

// raise is l with key's count one more, and at most maxEntries
// functions: key and those that ran most.
func (l lineage) raise(key string) lineage {
	n := l.count(key) + 1
	l = slices.DeleteFunc(l, func(e entry) bool { return e.key == key })
	slices.SortStableFunc(l, func(a, b entry) int { return cmp.Compare(b.count, a.count) })
	return append(l[:min(len(l), maxEntries-1)], entry{key, n})
}

// String is l as the Lineage field's value.
func (l lineage) String() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('|')
		}
		b.WriteString(e.key)
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.count))
	}
	return b.String()
}
