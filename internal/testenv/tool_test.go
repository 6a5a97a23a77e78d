package testenv

import (
	"testing"
)

// fakeTB records how a test ended.
type fakeTB struct {
	testing.TB
	fatal, skip string
}

func (f *fakeTB) Helper()                        {}
func (f *fakeTB) Fatalf(format string, a ...any) { f.fatal = format; panic(f) }
func (f *fakeTB) Skipf(format string, a ...any)  { f.skip = format; panic(f) }

func end(fn func(tb testing.TB)) (tb *fakeTB) {
	tb = &fakeTB{}
	defer func() { _ = recover() }()
	fn(tb)
	return tb
}

func TestToolMissing(t *testing.T) {
	const tool = "nimbus-no-such-tool"
	t.Setenv("NIMBUS_REQUIRE_SERVICES", "1")
	if tb := end(func(tb testing.TB) { Tool(tb, tool) }); tb.fatal == "" || tb.skip != "" {
		t.Errorf("a missing tool under NIMBUS_REQUIRE_SERVICES=1: fatal %q, skip %q; want a failure", tb.fatal, tb.skip)
	}
	t.Setenv("NIMBUS_REQUIRE_SERVICES", "")
	if tb := end(func(tb testing.TB) { Tool(tb, tool) }); tb.skip == "" || tb.fatal != "" {
		t.Errorf("a missing tool: fatal %q, skip %q; want a skip", tb.fatal, tb.skip)
	}
	if got := Tool(t, "sh"); got == "" {
		t.Error("Tool(sh) found nothing")
	}
}
