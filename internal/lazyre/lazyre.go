// Package lazyre compiles a regular expression on its first use.
//
// Every start of the nimbus binary runs every package's initialisers,
// and the binary starts often: each sandboxed instance's helper is the
// binary re-executed, and so is each CLI command. A pattern compiled at
// package level costs every one of those starts its compilation, which
// for a counted repetition (x{1,249} is unrolled) is hundreds of KB.
package lazyre

import (
	"regexp"
	"sync"
)

// New returns a function that compiles expr on its first call (panicking,
// as regexp.MustCompile, if it is invalid) and returns the same Regexp on
// every call.
func New(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}
