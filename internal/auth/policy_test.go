package auth

import (
	"path"
	"testing"
)

// FuzzPolicy evaluates arbitrary principals (role, glob) against arbitrary
// function names and accesses: no panic; an invoker never gets more than
// Invoke; nobody but an admin gets Administer; a developer or invoker is
// never allowed a function its glob does not match; an admin always is.
func FuzzPolicy(f *testing.F) {
	f.Add("developer", "team-a-*", "team-b-x", uint8(Manage))
	f.Add("invoker", "team-a-*", "team-a-x", uint8(Invoke))
	f.Add("invoker", "*", "arn:aws:lambda:us-east-1:0:function:f:1", uint8(Read))
	f.Add("developer", "team-[a", "team-a", uint8(Read))
	f.Add("developer", "team-a-*", "function:team-a-x:$LATEST", uint8(Manage))
	f.Add("admin", "x", "", uint8(Administer))
	f.Add("developer", "*", "", uint8(Administer))
	f.Add("developer", "team-a-*", "arn:aws:lambda:us-east-1:0:function:team-b-x:function:team-a-y", uint8(Invoke))
	f.Fuzz(func(t *testing.T, role, glob, fn string, a uint8) {
		access := Access(a % 4)
		p := Principal{Name: "k", Role: Role(role), Functions: glob}
		err := p.Allow(access, fn, "op")
		if err != nil {
			if e, ok := err.(*Error); !ok || e.Status != 403 || e.Type != "AccessDeniedException" {
				t.Fatalf("Allow error %T %v, want *Error AccessDeniedException", err, err)
			}
		}
		name := FunctionName(fn)
		matched, globErr := path.Match(glob, name)
		switch p.Role {
		case Admin:
			if err != nil || !p.Matches(fn) {
				t.Fatalf("admin refused %d on %q: %v", access, fn, err)
			}
		case Developer, Invoker:
			if err == nil && access == Administer {
				t.Fatalf("%s allowed to administer", p.Role)
			}
			if err == nil && p.Role == Invoker && access != Invoke {
				t.Fatalf("invoker allowed access %d on %q", access, fn)
			}
			if err == nil && p.Role == Invoker && fn == "" {
				t.Fatalf("invoker allowed access %d on no function", access)
			}
			if fn != "" && (globErr != nil || !matched) {
				if err == nil {
					t.Fatalf("%s with glob %q allowed %d on %q (name %q), which the glob does not match", p.Role, glob, access, fn, name)
				}
				if p.Matches(fn) {
					t.Fatalf("Matches(%q) with glob %q: true, want false", fn, glob)
				}
			}
			if fn != "" && matched && globErr == nil && !p.Matches(fn) {
				t.Fatalf("Matches(%q) with glob %q: false, want true", fn, glob)
			}
		default:
			if err == nil {
				t.Fatalf("unknown role %q allowed %d on %q", role, access, fn)
			}
		}
		if got := FunctionName(name); got != name && name != "" {
			t.Fatalf("FunctionName is not idempotent: %q -> %q -> %q", fn, name, got)
		}
	})
}
