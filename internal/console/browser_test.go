package console_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/nimbus-serverless/nimbus/internal/node"
	"github.com/nimbus-serverless/nimbus/internal/node/nodetest"
	"github.com/nimbus-serverless/nimbus/internal/sdkhttp"
	"github.com/nimbus-serverless/nimbus/internal/testenv"
)

// The browser tests drive the console in headless Chromium (Debian's
// chromium package) against a real node with authentication on: they sign
// in, deploy functions through the API, and use every page as a person
// would. Screenshots of each page, 1280 and 390 px wide, go to a temporary
// folder, or to $NIMBUS_CONSOLE_SHOTS when it is set.

// viewerZone is the time zone the browser is told it is in: half an hour
// off any whole-hour zone, so a time shown in UTC or the node's zone
// cannot pass for it.
const viewerZone = "Asia/Kolkata"

// Page widths: a desktop and a phone (an iPhone 12 to 15 is 390 CSS px).
const (
	wide   = 1280
	narrow = 390
)

// helloPy prints a log line and answers with a greeting.
const helloPy = `import sys

def handler(event, context):
    who = event.get("who", "nobody")
    print("hello from " + who)
    sys.stdout.flush()
    return {"greeting": "hi " + who}
`

// sleeperPy runs for 20 seconds: long enough to be stopped.
const sleeperPy = `import time

def handler(event, context):
    print("sleeping")
    time.sleep(20)
    return "woke"
`

// TestBrowserConsole is the console's end-to-end scenario in a browser.
func TestBrowserConsole(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node and a browser")
	}
	if _, err := exec.LookPath("/usr/bin/python3"); err != nil {
		testenv.Missing(t, "Python 3 (/usr/bin/python3)", err)
	}
	chromium := chromiumPath(t)
	sn := startSigned(t)
	b := newTab(t, chromium, sn.base())

	if !t.Run("SignIn", func(t *testing.T) { signIn(t, b, sn) }) {
		return
	}
	if !t.Run("Deploy", func(t *testing.T) { deploy(t, sn) }) {
		return
	}
	t.Run("FunctionList", func(t *testing.T) { functionList(t, b) })
	t.Run("TestInvoke", func(t *testing.T) { testInvoke(t, b, sn) })
	t.Run("AsyncStop", func(t *testing.T) { asyncStop(t, b, sn) })
	t.Run("Trigger", func(t *testing.T) { triggerToggle(t, b, sn) })
	t.Run("Usage", func(t *testing.T) { usage(t, b, sn) })
	t.Run("Pages", func(t *testing.T) { pages(t, b) })
	t.Run("Restart", func(t *testing.T) { restart(t, b, sn) })
	b.checkConsole(t)
}

// chromiumPath finds Chromium, or ends the test as a missing tool does.
func chromiumPath(t *testing.T) string {
	for _, p := range []string{"chromium", "/usr/bin/chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	testenv.Missing(t, "Chromium (Debian: apt-get install chromium)", errors.New("no chromium on PATH"))
	return ""
}

// signedNode is a node with authentication on, which the test can stop and
// open again on the same data directory and address.
type signedNode struct {
	t     *testing.T
	cfg   node.Config
	n     *node.Node
	done  chan error
	admin aws.Credentials
	fn    *lambda.Client
}

func startSigned(t *testing.T) *signedNode {
	t.Helper()
	cfg := node.Defaults()
	cfg.Addr, cfg.DataDir, cfg.Auth = "127.0.0.1:0", t.TempDir(), node.AuthSigV4
	// Function users are unprivileged: they traverse to the code.
	for _, d := range []string{cfg.DataDir, filepath.Dir(cfg.DataDir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A console's live log tail is a request that never ends by itself:
	// the node ends it when it shuts down, or the shutdown would wait out
	// its grace and fail (stop fails the test then).
	cfg.ShutdownGrace = 20 * time.Second
	level := slog.LevelWarn
	if os.Getenv("NIMBUS_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	sn := &signedNode{t: t, cfg: cfg}
	sn.open()
	// The address the first start picked is the one the restart takes.
	sn.cfg.Addr = sn.n.Addr()
	t.Cleanup(sn.stop)
	sn.admin = credentialsIn(t, filepath.Join(cfg.DataDir, "credentials"))
	sn.fn = lambda.New(lambda.Options{
		HTTPClient:   sdkhttp.Client(),
		BaseEndpoint: aws.String(sn.base()), Region: "us-east-1", RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(sn.admin.AccessKeyID, sn.admin.SecretAccessKey, ""),
	})
	return sn
}

func (sn *signedNode) open() {
	sn.t.Helper()
	n, err := node.Open(context.Background(), sn.cfg)
	if err != nil {
		sn.t.Fatalf("open node: %v", err)
	}
	sn.n, sn.done = n, make(chan error, 1)
	go func() { sn.done <- n.Serve() }()
}

// stop shuts the node down (once).
func (sn *signedNode) stop() {
	if sn.n == nil {
		return
	}
	if err := sn.n.Shutdown(context.Background()); err != nil {
		sn.t.Errorf("shutdown: %v", err)
	}
	if err := <-sn.done; err != nil {
		sn.t.Errorf("serve: %v", err)
	}
	sn.n = nil
}

func (sn *signedNode) base() string { return "http://" + sn.cfg.Addr }

// call sends a request to the API signed with the admin key, and returns
// the answer's status and body.
func (sn *signedNode) call(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, sn.base()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(body))
	if err := v4.NewSigner().SignHTTP(t.Context(), sn.admin, req, hex.EncodeToString(sum[:]), "lambda", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// invoke runs fn through the API with event.
func (sn *signedNode) invoke(t *testing.T, fn, event string, async bool) {
	t.Helper()
	in := &lambda.InvokeInput{FunctionName: aws.String(fn), Payload: []byte(event)}
	if async {
		in.InvocationType = types.InvocationTypeEvent
	}
	out, err := sn.fn.Invoke(t.Context(), in)
	if err != nil {
		t.Fatalf("invoke %s: %v", fn, err)
	}
	if out.FunctionError != nil {
		t.Fatalf("invoke %s: %s %s", fn, *out.FunctionError, out.Payload)
	}
}

// browser is a Chromium tab, with what the page logged to its console.
type tab struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots string
	// section is the element whose text a failed wait shows (the page's
	// main when "").
	section string

	mu   sync.Mutex
	logs []chromedp.ConsoleMessage
}

func newTab(t *testing.T, path, base string) *tab {
	t.Helper()
	actx, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		// This machine's network is closed: Chromium's own connections
		// (updates, sync, QUIC probes) would only be refused.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(wide, 900),
	)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	b := &tab{t: t, ctx: ctx, base: base, shots: os.Getenv("NIMBUS_CONSOLE_SHOTS")}
	if b.shots == "" {
		b.shots = t.TempDir()
	} else if err := os.MkdirAll(b.shots, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		testenv.Missing(t, "a working Chromium ("+path+")", err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.logs = append(b.logs, m)
			b.mu.Unlock()
		}
	}()
	// The viewer is in India, with British dates (24-hour times).
	if _, err := chromedp.Call(ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: viewerZone}); err != nil {
		t.Fatalf("time zone: %v", err)
	}
	if _, err := chromedp.Call(ctx, emulation.SetLocaleOverride, emulation.SetLocaleOverrideParams{Locale: "en_GB"}); err != nil {
		t.Fatalf("locale: %v", err)
	}
	b.width(wide)
	return b
}

// checkConsole fails t on an uncaught exception in a page, or a Content
// Security Policy violation; the connection errors of the restart are
// expected.
func (b *tab) checkConsole(t *testing.T) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.logs {
		bad := m.IsException() || strings.Contains(m.Text, "Content Security Policy")
		if bad {
			t.Errorf("page console: %s:%d %s", m.URL, m.Line+1, m)
		} else if testing.Verbose() {
			t.Logf("page console: %s", m)
		}
	}
}

// do runs steps within a minute, failing t on an error.
func (b *tab) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := b.run(steps...); err != nil {
		t.Fatalf("%s: %v (page %s)", what, err, b.location())
	}
}

// run runs steps, within a minute.
func (b *tab) run(steps ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	return chromedp.Do(ctx, steps...)
}

// doFresh is do for steps on a page that has just loaded, which can be
// run again from the start (they clear what they type): once more when a
// node they found is gone before they act on it. chromedp fetches the
// page's DOM anew when the browser says the document changed, which can
// come a moment after a form's answer has loaded; the fetch gives every
// node a new id, and an action between the query and it fails with "Could
// not find node with given id" (CI, once: the login form).
func (b *tab) doFresh(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	err := b.run(steps...)
	if err != nil && strings.Contains(err.Error(), "Could not find node with given id") {
		t.Logf("%s: %v; once more", what, err)
		err = b.run(steps...)
	}
	if err != nil {
		t.Fatalf("%s: %v (page %s)", what, err, b.location())
	}
}

// open navigates to the console path p and waits for the page to be ready.
func (b *tab) open(t *testing.T, p string) {
	t.Helper()
	b.do(t, "open "+p, chromedp.Navigate(b.base+p))
	b.wait(t, "page "+p+" loaded", `document.readyState === "complete" && !!window.htmx`, 10*time.Second)
	b.settle(t)
}

// settle waits for the page's layout to stop moving: the live log tail
// fills in just after the page loads and pushes the sections below it
// down, and a click aimed before that lands on whatever moved under it.
func (b *tab) settle(t *testing.T) {
	t.Helper()
	b.wait(t, "the live tail started", `!document.querySelector("#log-tail") || !document.querySelector("#log-tail").textContent.includes("Connecting")`, 10*time.Second)
	last, same := -1, 0
	for deadline := time.Now().Add(5 * time.Second); same < 3 && time.Now().Before(deadline); {
		h, err := eval[int](b, `document.documentElement.scrollHeight`)
		if err == nil && h == last {
			same++
		} else {
			last, same = h, 0
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// eval evaluates expr in the page.
func eval[T any](b *tab, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

// wait evaluates the JavaScript condition cond until it is true, failing
// t after timeout. A condition that throws (its element is not there yet,
// or the page is loading) counts as false.
func (b *tab) wait(t *testing.T, what, cond string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := eval[bool](b, cond)
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not so after %v (%s; last error %v); page %s:\n%s", what, timeout, cond, err, b.location(), b.mainText(b.section))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// text is the text of the first element matching the CSS selector sel, ""
// when there is none.
func (b *tab) text(t *testing.T, sel string) string {
	t.Helper()
	s, err := eval[string](b, fmt.Sprintf(`(document.querySelector(%s) || {}).textContent || ""`, jsString(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

func (b *tab) location() string {
	s, _ := eval[string](b, `location.pathname + location.search`)
	return s
}

// mainText is the text of the element sel ("": the page's main), for
// failure messages.
func (b *tab) mainText(sel string) string {
	if sel == "" {
		sel = "main"
	}
	s, _ := eval[string](b, fmt.Sprintf(`(document.querySelector(%s) || document.body || {}).innerText || ""`, jsString(sel)))
	if len(s) > 2000 {
		s = s[:2000] + "…"
	}
	return s
}

// width resizes the viewport to w CSS pixels (at one device pixel each).
func (b *tab) width(w int64) {
	b.t.Helper()
	b.do(b.t, "resize", chromedp.EmulateViewport(w, 900))
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}

// shot saves a full-page screenshot as name-WIDTH.png.
func (b *tab) shot(t *testing.T, name string, w int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(b.shots, fmt.Sprintf("%s-%d.png", name, w))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// noSideScroll fails t when the page is wider than the viewport.
func (b *tab) noSideScroll(t *testing.T, name string) {
	t.Helper()
	var got struct{ Scroll, Inner int }
	raw, err := eval[[]byte](b, `({Scroll: document.documentElement.scrollWidth, Inner: window.innerWidth})`)
	if err == nil {
		err = json.Unmarshal(raw, &got)
	}
	if err != nil {
		t.Fatalf("widths of %s: %v", name, err)
	}
	if got.Scroll > got.Inner {
		wider, _ := eval[string](b, `Array.from(document.querySelectorAll("body *")).filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5).slice(0, 8).map(e => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + (e.className && typeof e.className === "string" ? "." + e.className.trim().split(/\s+/).join(".") : "") + " (" + Math.round(e.getBoundingClientRect().right) + "px)").join(", ")`)
		t.Errorf("%s at %d px scrolls sideways: the page is %d px wide; too wide: %s", name, got.Inner, got.Scroll, wider)
	}
}

// signIn checks that the console asks for a login, refuses a wrong secret
// and lets the admin key in, back to the page asked for.
func signIn(t *testing.T, b *tab, sn *signedNode) {
	b.do(t, "open the console", chromedp.Navigate(b.base+"/console/functions"))
	b.wait(t, "the login form", `!!document.querySelector("#login") && location.pathname === "/console/login"`, 10*time.Second)
	for _, w := range []int64{narrow, wide} {
		b.width(w)
		b.noSideScroll(t, "the login page")
		b.shot(t, "login", w)
	}
	login := func(secret string) {
		b.doFresh(t, "fill the login form",
			chromedp.Clear(chromedp.CSS(`#login input[name=access_key_id]`)),
			chromedp.Clear(chromedp.CSS(`#login input[name=secret_access_key]`)),
			chromedp.SendKeys(chromedp.CSS(`#login input[name=access_key_id]`), sn.admin.AccessKeyID),
			chromedp.SendKeys(chromedp.CSS(`#login input[name=secret_access_key]`), secret),
			chromedp.Click(chromedp.CSS(`#login button[type=submit]`)),
		)
	}
	login("not-the-secret")
	b.wait(t, "the login refused", `!!document.querySelector("#login-error")`, 10*time.Second)
	if got := b.text(t, "#login-error"); !strings.Contains(got, "not right") {
		t.Errorf("login error = %q", got)
	}
	login(sn.admin.SecretAccessKey)
	b.wait(t, "signed in, on the page asked for", `location.pathname === "/console/functions" && !!document.querySelector("#fn-filter")`, 10*time.Second)
	if got := b.text(t, ".who span"); got == "" {
		t.Errorf("the header names no signed-in key")
	}
	// The session cookie is out of the page's reach and never sent by
	// another site.
	cookies, err := chromedp.Call(b.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{b.base + "/console/"}})
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, c := range cookies.Cookies {
		if c.Name == "nimbus_session" {
			found = true
			if !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict || c.Path != "/console/" {
				t.Errorf("session cookie: HttpOnly %v, SameSite %q, Path %q; want HttpOnly, Strict, /console/", c.HTTPOnly, c.SameSite, c.Path)
			}
		}
	}
	if !found {
		t.Errorf("no nimbus_session cookie after signing in")
	}
}

// deploy creates the functions through the API, with the admin key, and a
// timer trigger on hello.
func deploy(t *testing.T, sn *signedNode) {
	for _, f := range []struct{ name, code string }{
		{"hello", helloPy}, {"hello-again", helloPy}, {"sleeper", sleeperPy},
	} {
		_, err := sn.fn.CreateFunction(t.Context(), &lambda.CreateFunctionInput{
			FunctionName: aws.String(f.name), Runtime: types.RuntimePython311, Handler: aws.String("app.handler"),
			Role: aws.String("arn:aws:iam::000000000000:role/console"), Timeout: aws.Int32(60),
			Code: &types.FunctionCode{ZipFile: nodetest.Zip(t, map[string]string{"app.py": f.code})},
		})
		if err != nil {
			t.Fatalf("create %s: %v", f.name, err)
		}
	}
	// One sleeper at a time: a second asynchronous event waits its turn.
	if _, err := sn.fn.PutFunctionConcurrency(t.Context(), &lambda.PutFunctionConcurrencyInput{
		FunctionName: aws.String("sleeper"), ReservedConcurrentExecutions: aws.Int32(1),
	}); err != nil {
		t.Fatalf("reserve sleeper's concurrency: %v", err)
	}
	if code, body := sn.call(t, "POST", "/nimbus/v1/functions/hello/triggers",
		`{"name":"hourly","type":"timer","config":{"schedule":"@hourly"}}`); code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("create the timer trigger = %d %s", code, body)
	}
}

// functionList checks the list and its filter.
func functionList(t *testing.T, b *tab) {
	b.open(t, "/console/functions")
	for _, name := range []string{"hello", "hello-again", "sleeper"} {
		b.wait(t, name+" listed", fmt.Sprintf(`!!document.querySelector('#functions a[href="/console/functions/%s"]')`, name), 5*time.Second)
	}
	if got := b.text(t, "#fn-count"); got != "3 of 3 functions" {
		t.Errorf("count = %q, want 3 of 3 functions", got)
	}
	b.do(t, "type in the filter", chromedp.SendKeys(chromedp.ID("fn-filter"), "sleep"))
	b.wait(t, "the filter narrows the list", `document.querySelector("#fn-count").textContent.trim() === "1 of 3 functions" &&
		!!document.querySelector('#functions a[href="/console/functions/sleeper"]') && !document.querySelector('#functions a[href="/console/functions/hello"]')`, 10*time.Second)
	b.wait(t, "the filter in the address", `location.search.includes("q=sleep")`, 5*time.Second)
}

// testInvoke runs hello from the form, then follows its record, chart and
// log.
func testInvoke(t *testing.T, b *tab, sn *signedNode) {
	b.open(t, "/console/functions/hello")
	b.wait(t, "the function page", `!!document.querySelector("#invoke-form") && !!document.querySelector("#window-totals")`, 10*time.Second)
	before := b.text(t, `#window-totals [data-k=invocations]`)
	b.do(t, "invoke from the form",
		chromedp.SetValue(chromedp.ID("payload"), `{"who": "the console"}`),
		chromedp.Click(chromedp.ID("invoke-button")),
	)
	b.wait(t, "the invoke's outcome", `!!document.querySelector("#invoke-outcome")`, 30*time.Second)
	if got := b.text(t, "#invoke-status"); got != "Succeeded" {
		t.Fatalf("invoke status = %q: %s", got, b.mainText(""))
	}
	if got := b.text(t, "#invoke-response"); !strings.Contains(got, `"greeting": "hi the console"`) && !strings.Contains(got, `"greeting":"hi the console"`) {
		t.Errorf("invoke response = %q", got)
	}
	if got := b.text(t, "#invoke-log"); !strings.Contains(got, "hello from the console") || !strings.Contains(got, "REPORT RequestId") {
		t.Errorf("invoke log tail = %q", got)
	}
	if got := b.text(t, "#invoke-duration"); !strings.HasSuffix(got, "ms") {
		t.Errorf("invoke duration = %q, want a duration in ms", got)
	}
	id := b.text(t, "#invoke-outcome code")
	if id == "" {
		t.Fatal("the outcome names no request id")
	}

	// The invocation appears in the recent list, its time in the viewer's
	// zone.
	link := fmt.Sprintf(`#invocations a.req[href*=%s]`, jsString("request_id="+id))
	b.wait(t, "the invocation in the recent list", fmt.Sprintf(`!!document.querySelector(%s)`, jsString(link)), 15*time.Second)
	checkLocalTime(t, b, `#invocations tbody tr:first-child time`)

	// The live tail shows the line, then a new one.
	b.wait(t, "the live tail", `document.querySelector("#log-tail").textContent.includes("hello from the console")`, 15*time.Second)
	sn.invoke(t, "hello", `{"who": "the API"}`, false)
	b.wait(t, "a new line in the live tail", `Array.from(document.querySelectorAll("#log-tail .line .l")).some(e => e.textContent.includes("hello from the API"))`, 15*time.Second)
	checkLocalTime(t, b, `#log-tail .line time`)

	// The chart moves once the statistics fold the invocations in.
	b.wait(t, "the invocations count moves", fmt.Sprintf(`(() => { const v = document.querySelector("#window-totals [data-k=invocations]").textContent.trim(); return v !== %s && v !== "" })()`, jsString(before)), 45*time.Second)
	b.wait(t, "the chart has the invocations", `(() => {
		const fig = document.querySelector("#ch-inv");
		const d = JSON.parse(fig.dataset.chart).data;
		return d[1] && d[1].reduce((a, b) => a + b, 0) >= 1 && !!fig.querySelector(".uplot");
	})()`, 5*time.Second)
	for _, w := range []int64{wide, narrow} {
		b.width(w)
		b.noSideScroll(t, "the function page")
		b.shot(t, "function", w)
	}
	b.width(wide)

	// The request's log page, from its link in the recent list.
	b.do(t, "open the request's log", chromedp.Click(chromedp.CSS(link)))
	b.wait(t, "the request's log page", fmt.Sprintf(`location.pathname === "/console/functions/hello/logs" && location.search.includes(%s) && !!document.querySelector("#request-log")`, jsString(id)), 10*time.Second)
	if got := b.text(t, "#request-log"); !strings.Contains(got, "hello from the console") || strings.Contains(got, "hello from the API") {
		t.Errorf("request log = %q: want its own line only", got)
	}
	checkLocalTime(t, b, `#request-log .line time`)
	for _, w := range []int64{narrow, wide} {
		b.width(w)
		b.noSideScroll(t, "a request's log page")
		b.shot(t, "logs", w)
	}
}

// checkLocalTime checks that the <time> element sel shows its datetime in
// the viewer's zone (en-GB: 25/12/2026, 14:05:09).
func checkLocalTime(t *testing.T, b *tab, sel string) {
	t.Helper()
	b.wait(t, "a local time at "+sel, fmt.Sprintf(`!!document.querySelector(%s + "[data-local]")`, jsString(sel)), 5*time.Second)
	var got struct{ DateTime, Text string }
	raw, err := eval[[]byte](b, fmt.Sprintf(`(e => ({DateTime: e.getAttribute("datetime"), Text: e.textContent}))(document.querySelector(%s))`, jsString(sel)))
	if err == nil {
		err = json.Unmarshal(raw, &got)
	}
	if err != nil {
		t.Fatalf("time at %s: %v", sel, err)
	}
	at, err := time.Parse(time.RFC3339Nano, got.DateTime)
	if err != nil {
		t.Fatalf("time at %s: datetime %q: %v", sel, got.DateTime, err)
	}
	zone, err := time.LoadLocation(viewerZone)
	if err != nil {
		t.Fatal(err)
	}
	if want := at.In(zone).Format("02/01/2006, 15:04:05"); got.Text != want {
		t.Errorf("time at %s shows %q for %s, want %q (%s)", sel, got.Text, got.DateTime, want, viewerZone)
	}
}

// asyncStop stops a running asynchronous task and the one queued behind
// it.
func asyncStop(t *testing.T, b *tab, sn *signedNode) {
	b.section = "#async"
	defer func() { b.section = "" }()
	sn.invoke(t, "sleeper", `{}`, true)
	sn.invoke(t, "sleeper", `{}`, true)
	b.open(t, "/console/functions/sleeper")
	// The section reloads every 10 s; reloading the page is quicker.
	const statuses = `Array.from(document.querySelectorAll("#tasks .badge[data-status]")).map(e => e.dataset.status)`
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, _ := eval[[]string](b, statuses)
		slices.Sort(s)
		if slices.Equal(s, []string{"Enqueued", "Running"}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tasks %v, want one Running and one Enqueued:\n%s", s, b.mainText(""))
		}
		time.Sleep(500 * time.Millisecond)
		b.open(t, "/console/functions/sleeper")
	}
	running, err := eval[string](b, `document.querySelector('#tasks .badge[data-status="Running"]').closest("tr").id`)
	if err != nil {
		t.Fatal(err)
	}
	row := fmt.Sprintf(`[id=%s]`, jsString(running))
	b.do(t, "stop the running task", chromedp.Click(chromedp.CSS(row+" .stop-task")))
	status := func(row string) string {
		return fmt.Sprintf(`document.querySelector(%s).dataset.status`, jsString(row+" .badge"))
	}
	b.wait(t, "the task stopping", fmt.Sprintf(`["Stopping", "Stopped"].includes(%s)`, status(row)), 10*time.Second)
	// The other task, queued or just started: stop it too.
	other, err := eval[string](b, `Array.from(document.querySelectorAll("#tasks tr[id]")).find(r => !!r.querySelector(".stop-task")).id`)
	if err != nil {
		t.Fatalf("no second task to stop: %v\n%s", err, b.mainText(""))
	}
	orow := fmt.Sprintf(`[id=%s]`, jsString(other))
	b.do(t, "stop the other task", chromedp.Click(chromedp.CSS(orow+" .stop-task")))
	b.wait(t, "the other task stopping", fmt.Sprintf(`["Stopping", "Stopped"].includes(%s)`, status(orow)), 10*time.Second)
	deadline = time.Now().Add(30 * time.Second)
	for {
		s, _ := eval[[]string](b, statuses)
		if slices.Equal(s, []string{"Stopped", "Stopped"}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tasks %v, want both Stopped:\n%s", s, b.mainText(""))
		}
		time.Sleep(500 * time.Millisecond)
		b.open(t, "/console/functions/sleeper")
	}
	if ok, _ := eval[bool](b, `!!document.querySelector("#tasks .stop-task")`); ok {
		t.Errorf("a stopped task still has a Stop button")
	}
}

// triggerToggle disables and enables hello's timer trigger.
func triggerToggle(t *testing.T, b *tab, sn *signedNode) {
	b.section = "#triggers"
	defer func() { b.section = "" }()
	b.open(t, "/console/functions/hello")
	b.wait(t, "the trigger", `!!document.querySelector('#trigger-hourly button[data-action="disable"]')`, 10*time.Second)
	b.do(t, "disable the trigger", chromedp.Click(chromedp.CSS(`#trigger-hourly button[data-action="disable"]`)))
	b.wait(t, "the trigger disabled", `!!document.querySelector('#trigger-hourly button[data-action="enable"]') &&
		document.querySelector("#trigger-hourly .badge").textContent.trim() === "Disabled"`, 10*time.Second)
	if enabled := triggerEnabled(t, sn); enabled {
		t.Errorf("the API says the trigger is enabled after Disable")
	}
	b.do(t, "enable the trigger", chromedp.Click(chromedp.CSS(`#trigger-hourly button[data-action="enable"]`)))
	b.wait(t, "the trigger enabled", `!!document.querySelector('#trigger-hourly button[data-action="disable"]') &&
		document.querySelector("#trigger-hourly .badge").textContent.trim() !== "Disabled"`, 10*time.Second)
	if enabled := triggerEnabled(t, sn); !enabled {
		t.Errorf("the API says the trigger is disabled after Enable")
	}
}

func triggerEnabled(t *testing.T, sn *signedNode) bool {
	t.Helper()
	code, body := sn.call(t, "GET", "/nimbus/v1/functions/hello/triggers/hourly", "")
	var got map[string]any
	if code != http.StatusOK || json.Unmarshal(body, &got) != nil {
		t.Fatalf("get the trigger = %d %s", code, body)
	}
	for k, v := range got {
		if strings.EqualFold(k, "enabled") {
			return v == true
		}
	}
	t.Fatalf("the trigger has no enabled field: %s", body)
	return false
}

// usage checks the usage page and its CSV download.
func usage(t *testing.T, b *tab, sn *signedNode) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		b.open(t, "/console/usage")
		if ok, _ := eval[bool](b, `!!document.querySelector('#usage-by-function a[href="/console/functions/hello"]')`); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hello's usage never showed:\n%s", b.mainText(""))
		}
		time.Sleep(time.Second)
	}
	href, err := eval[string](b, `document.querySelector("#usage-csv").href`)
	if err != nil || !strings.HasPrefix(href, b.base+"/console/usage.csv?") {
		t.Fatalf("CSV link = %q, %v", href, err)
	}
	// Download it as the browser would, with the session cookie.
	cookies, err := chromedp.Call(b.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{href}})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(t.Context(), "GET", href, nil)
	for _, c := range cookies.Cookies {
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/csv") ||
		!strings.HasPrefix(res.Header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("GET %s = %d %s %s: %s", href, res.StatusCode, res.Header.Get("Content-Type"), res.Header.Get("Content-Disposition"), body)
	}
	rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil || len(rows) < 2 {
		t.Fatalf("CSV: %v\n%s", err, body)
	}
	if !strings.HasPrefix(strings.Join(rows[0], ","), "day,function,requests,") {
		t.Errorf("CSV header = %q", rows[0])
	}
	var hello int
	for _, r := range rows[1:] {
		if r[1] == "hello" {
			n, _ := strconv.Atoi(r[2])
			hello += n
		}
	}
	if hello < 2 {
		t.Errorf("CSV: hello has %d requests, want at least 2:\n%s", hello, body)
	}
	// Without the session, no CSV.
	res2, err := http.Get(href)
	if err != nil {
		t.Fatal(err)
	}
	res2.Body.Close()
	if res2.StatusCode == http.StatusOK && strings.HasPrefix(res2.Header.Get("Content-Type"), "text/csv") {
		t.Errorf("the CSV is served without a session")
	}
	_ = sn
}

// pages checks every page at both widths (no sideways scrolling on a
// phone) and saves their screenshots.
func pages(t *testing.T, b *tab) {
	for _, p := range []struct{ name, path, ready string }{
		{"overview", "/console/", "#overview"},
		{"functions", "/console/functions", "#functions"},
		{"usage", "/console/usage", "#usage-total"},
	} {
		for _, w := range []int64{narrow, wide} {
			b.width(w)
			b.open(t, p.path)
			b.wait(t, p.name+" ready", fmt.Sprintf(`!!document.querySelector(%s)`, jsString(p.ready)), 10*time.Second)
			b.noSideScroll(t, "the "+p.name+" page")
			b.shot(t, p.name, w)
		}
	}
	b.width(wide)
}

// restart stops the node under an open function page, which shows the
// banner, then starts it again: the banner goes, the page works again and
// the session holds.
func restart(t *testing.T, b *tab, sn *signedNode) {
	b.open(t, "/console/functions/hello")
	b.wait(t, "the live tail connected", `!document.querySelector("#log-tail").textContent.includes("Connecting")`, 10*time.Second)
	b.wait(t, "no banner", `document.querySelector("#conn-banner").hidden`, time.Second)
	sn.stop()
	b.wait(t, "the banner shown", `!document.querySelector("#conn-banner").hidden && getComputedStyle(document.querySelector("#conn-banner")).display !== "none"`, 15*time.Second)
	b.shot(t, "restarting", wide)
	sn.open()
	b.wait(t, "the banner hidden", `document.querySelector("#conn-banner").hidden && getComputedStyle(document.querySelector("#conn-banner")).display === "none"`, 15*time.Second)
	if got := b.location(); got != "/console/functions/hello" {
		t.Fatalf("after the restart the page is %s, want the function page (signed in still)", got)
	}
	// The live tail reconnects; a test invoke works without signing in.
	sn.invoke(t, "hello", `{"who": "the restarted node"}`, false)
	b.wait(t, "the live tail after the restart", `Array.from(document.querySelectorAll("#log-tail .line .l")).some(e => e.textContent.includes("hello from the restarted node"))`, 20*time.Second)
	b.do(t, "invoke after the restart",
		chromedp.SetValue(chromedp.ID("payload"), `{"who": "after"}`),
		chromedp.Click(chromedp.ID("invoke-button")),
	)
	b.wait(t, "the invoke's outcome after the restart", `(document.querySelector("#invoke-log") || {}).textContent?.includes("hello from after")`, 30*time.Second)
	b.open(t, "/console/functions")
	if got := b.location(); got != "/console/functions" {
		t.Errorf("after the restart /console/functions went to %s: the session did not survive", got)
	}
}
