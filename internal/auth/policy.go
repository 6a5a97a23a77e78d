package auth

import (
	"path"
	"strings"
)

// Access is the kind of thing a request does.
type Access int

// The kinds, from least to most.
const (
	// Invoke runs a function (synchronously, asynchronously, by URL).
	Invoke Access = iota
	// Read reads a function's configuration, logs, code or tasks, or a
	// node-wide list such as the runtimes.
	Read
	// Manage creates, changes or deletes functions and what hangs off them
	// (triggers, concurrency, invoke configs, URLs, tasks).
	Manage
	// Administer manages keys and reads the audit trail.
	Administer
)

// Allow decides whether p may do access on function fn ("" for a request
// that names no function). action names the operation for the error.
// Errors: *Error AccessDeniedException.
func (p Principal) Allow(access Access, fn, action string) error {
	if p.Role == Admin {
		return nil
	}
	ok := false
	switch p.Role {
	case Developer:
		ok = access <= Manage && (fn == "" || p.Matches(fn))
	case Invoker:
		ok = access == Invoke && fn != "" && p.Matches(fn)
	}
	if !ok {
		return Denied(p, action+onFunction(fn))
	}
	return nil
}

func onFunction(fn string) string {
	if fn == "" {
		return ""
	}
	return " on function " + fn
}

// Matches reports whether p's function glob matches the function named
// (or ARN'd, or qualified) fn.
func (p Principal) Matches(fn string) bool {
	if p.Role == Admin {
		return true
	}
	ok, err := path.Match(p.Functions, FunctionName(fn))
	return err == nil && ok
}

// FunctionName returns the bare name of a function given by name, by
// partial or full ARN, with or without a qualifier.
func FunctionName(s string) string {
	if i := strings.Index(s, ":function:"); i >= 0 {
		s = s[i+len(":function:"):]
	} else if rest, ok := strings.CutPrefix(s, "function:"); ok {
		s = rest
	}
	name, _, _ := strings.Cut(s, ":")
	return name
}
