package cli

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"

	"github.com/nimbus-serverless/nimbus/internal/sdkhttp"
)

// progressThreshold is the request body size above which uploads show
// progress.
const progressThreshold = 1 << 20

// progressTransport reports the upload progress of request bodies larger
// than threshold to w. With w nil it only passes requests on.
type progressTransport struct {
	base      http.RoundTripper
	threshold int64
	w         io.Writer
	// size, when set, is what the progress shows as the total: the code
	// package's size, rather than the request body's, which carries it in
	// base64 (a third larger). The bytes sent are scaled to match.
	size int64
}

func (t *progressTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.w == nil || req.Body == nil || req.ContentLength <= t.threshold {
		return t.base.RoundTrip(req)
	}
	pr := &progressReader{rc: req.Body, total: req.ContentLength, shown: t.size, w: t.w, tty: isTerminal(t.w), last: -1}
	if pr.shown <= 0 {
		pr.shown = pr.total
	}
	r := req.Clone(req.Context())
	r.Body = pr
	resp, err := t.base.RoundTrip(r)
	pr.finish()
	return resp, err
}

// CloseIdleConnections closes base's idle connections, for http.Client's.
func (t *progressTransport) CloseIdleConnections() { sdkhttp.CloseIdle(t.base) }

// progressReader counts the bytes read from rc and reports each tenth of
// total: on a terminal by rewriting one line, elsewhere one line per step.
type progressReader struct {
	rc    io.ReadCloser
	total int64 // bytes of the body
	shown int64 // what the total is shown as
	w     io.Writer
	tty   bool

	mu      sync.Mutex // the transport reads the body on its own goroutine
	n       int64
	last    int64 // last tenth reported
	done    bool
	printed bool
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.rc.Read(b)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n += int64(n)
	if tenth := p.n * 10 / p.total; tenth != p.last && !p.done {
		p.last = tenth
		p.report()
	}
	return n, err
}

func (p *progressReader) report() {
	pct := p.n * 100 / p.total
	line := fmt.Sprintf("upload: %s / %s (%d%%)", humanBytes(p.n*p.shown/p.total), humanBytes(p.shown), pct)
	if p.tty {
		fmt.Fprint(p.w, "\r"+line)
	} else {
		fmt.Fprintln(p.w, line)
	}
	p.printed = true
}

func (p *progressReader) Close() error { return p.rc.Close() }

// finish stops reporting (the transport may still be reading after the
// response came) and ends a terminal's progress line.
func (p *progressReader) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.printed && !p.done {
		fmt.Fprintln(p.w)
	}
	p.done = true
}

// isTerminal reports whether w is a character device such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// humanBytes formats n with a binary unit: 512 B, 1.5 KiB, 12.0 MiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
