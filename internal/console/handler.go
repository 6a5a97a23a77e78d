package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/auth"
)

// visit is one request of a signed-in visitor.
type visit struct {
	c    *Console
	r    *http.Request
	p    auth.Principal
	csrf string
}

// handle serves pattern with h for signed-in visitors, checking the CSRF
// token of every POST.
func (c *Console) handle(pattern string, h func(http.ResponseWriter, *http.Request, *visit) error) {
	c.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		p, token, ok := c.principal(r)
		if !ok {
			c.signIn(w, r)
			return
		}
		v := &visit{c: c, r: r, p: p, csrf: token}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil {
				c.fail(w, r, v, formError(err))
				return
			}
			if !checkCSRF(r, token) {
				c.fail(w, r, v, &apiError{Status: http.StatusForbidden, Type: "InvalidCSRFToken",
					Message: "This form is out of date (its security token does not match your session). Reload the page and try again."})
				return
			}
		}
		if err := h(w, r, v); err != nil {
			c.fail(w, r, v, err)
		}
	})
}

// maxForm caps a console form: a test invoke's payload is the largest,
// up to Lambda's 6 MB, which URL-encoding can make three times longer.
const maxForm = 3*6<<20 + 64<<10

// formError is the error of a form that does not parse.
func formError(err error) *apiError {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &apiError{Status: http.StatusRequestEntityTooLarge, Type: "RequestTooLargeException",
			Message: "The form is too large: a test invoke's event may have at most 6 MB (6291456 bytes)."}
	}
	return &apiError{Status: http.StatusBadRequest, Type: "InvalidRequestContentException", Message: "The form could not be read: " + err.Error()}
}

// formValue is a field a form must have.
func formValue(r *http.Request, name string) (string, error) {
	if vs, ok := r.PostForm[name]; ok && len(vs) > 0 {
		return vs[0], nil
	}
	return "", &apiError{Status: http.StatusBadRequest, Type: "InvalidParameterValueException", Message: "The form has no " + name + " field."}
}

// signIn sends a visitor without a session to the login page: a redirect
// for a page, an HX-Redirect for htmx, 401 for the rest.
func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	login := Prefix + "login"
	if r.Method == http.MethodGet && r.URL.Path != Prefix+"ping" {
		login += "?next=" + urlQueryEscape(r.URL.RequestURI())
	}
	switch {
	case r.Header.Get("HX-Request") != "":
		w.Header().Set("HX-Redirect", login)
		w.WriteHeader(http.StatusUnauthorized)
	case r.Method == http.MethodGet && !strings.HasSuffix(r.URL.Path, "/stream") && r.URL.Path != Prefix+"ping":
		http.Redirect(w, r, login, http.StatusSeeOther)
	default:
		http.Error(w, "Sign in to the console first.", http.StatusUnauthorized)
	}
}

// apiError is an error answer of the API, or one of the console's own.
type apiError struct {
	Status        int
	Type, Message string
}

func (e *apiError) Error() string { return e.Type + ": " + e.Message }

// fail shows err: a page for a page, a fragment for htmx.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, v *visit, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		if errors.Is(err, context.Canceled) {
			return
		}
		id := randomToken()[:12]
		c.log.Error("console failed", "path", r.URL.Path, "error_id", id, "err", err)
		ae = &apiError{Status: http.StatusInternalServerError, Type: "ServiceException",
			Message: "The console failed to answer (error id " + id + ", in the node's log). Try again; if it goes on, report the id."}
	}
	if r.Header.Get("HX-Request") != "" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("HX-Reswap", "innerHTML")
		w.WriteHeader(ae.Status)
		_ = c.pages["fragments"].ExecuteTemplate(w, "error", ae)
		return
	}
	c.render(w, r, ae.Status, "error", page{Title: http.StatusText(ae.Status), Visit: v, Data: ae})
}

func (c *Console) notFound(w http.ResponseWriter, r *http.Request) {
	p, token, ok := c.principal(r)
	var v *visit
	if ok {
		v = &visit{c: c, r: r, p: p, csrf: token}
	}
	c.fail(w, r, v, &apiError{Status: http.StatusNotFound, Type: "NotFound", Message: "There is no console page at " + r.URL.Path + "."})
}

// reply is an answer of the API.
type reply struct {
	Status int
	Header http.Header
	Body   []byte
}

// recorder is an in-memory http.ResponseWriter.
type recorder struct {
	h      http.Header
	status int
	buf    bytes.Buffer
}

func (rec *recorder) Header() http.Header { return rec.h }
func (rec *recorder) WriteHeader(s int) {
	if rec.status == 0 {
		rec.status = s
	}
}
func (rec *recorder) Write(b []byte) (int, error) {
	rec.WriteHeader(http.StatusOK)
	return rec.buf.Write(b)
}

// call makes an API request as the visitor, in the process.
func (v *visit) call(method, path string, body []byte, hdr http.Header) (*reply, error) {
	req, err := v.request(v.r.Context(), method, path, body, hdr)
	if err != nil {
		return nil, err
	}
	rec := &recorder{h: http.Header{}}
	v.c.cfg.API.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	rep := &reply{Status: rec.status, Header: rec.h, Body: rec.buf.Bytes()}
	if rep.Status >= 400 {
		return rep, errorOf(rep)
	}
	return rep, nil
}

func (v *visit) request(ctx context.Context, method, path string, body []byte, hdr http.Header) (*http.Request, error) {
	req, err := http.NewRequestWithContext(api.Authenticated(ctx, v.p), method, path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("console request %s %s: %w", method, path, err)
	}
	req.RemoteAddr = v.r.RemoteAddr
	req.Host = v.r.Host
	req.Header.Set("User-Agent", "nimbus-console "+v.r.UserAgent())
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if len(body) > 0 && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// errorOf reads the API's error answer.
func errorOf(rep *reply) error {
	var b struct {
		Message string `json:"message"`
	}
	_ = json.Unmarshal(rep.Body, &b)
	e := &apiError{Status: rep.Status, Type: rep.Header.Get("X-Amzn-ErrorType"), Message: b.Message}
	if e.Message == "" {
		e.Message = strings.TrimSpace(string(rep.Body))
	}
	if e.Type == "" {
		e.Type = http.StatusText(rep.Status)
	}
	return e
}

// get makes a GET request of the API and decodes its JSON answer into out.
func (v *visit) get(path string, out any) error {
	rep, err := v.call(http.MethodGet, path, nil, nil)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(rep.Body, out); err != nil {
		return fmt.Errorf("console: decode %s: %w", path, err)
	}
	return nil
}

// post makes a POST request of the API with a JSON body (nil: none) and
// decodes its JSON answer into out (nil: ignored).
func (v *visit) post(path string, in, out any) error {
	var body []byte
	if in != nil {
		body, _ = json.Marshal(in)
	}
	rep, err := v.call(http.MethodPost, path, body, nil)
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(rep.Body, out)
}

// stream makes a streaming API request as the visitor: the answer's body
// is read as the handler writes it, until ctx ends or the handler returns.
func (v *visit) stream(ctx context.Context, path string) (io.ReadCloser, error) {
	req, err := v.request(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	sw := &streamWriter{h: http.Header{}, w: pw, started: make(chan struct{})}
	go func() {
		defer func() {
			// The API's handler runs outside net/http's own recovery here:
			// a panic ends this stream, not the node.
			if p := recover(); p != nil {
				v.c.log.Error("console: the API panicked in a stream", "path", path, "panic", p)
				sw.WriteHeader(http.StatusInternalServerError)
				_ = pw.CloseWithError(fmt.Errorf("the API failed: %v", p))
			}
		}()
		v.c.cfg.API.ServeHTTP(sw, req)
		sw.WriteHeader(http.StatusOK)
		_ = pw.Close()
	}()
	<-sw.started
	if sw.status >= 400 {
		b, _ := io.ReadAll(pr)
		return nil, errorOf(&reply{Status: sw.status, Header: sw.h, Body: b})
	}
	return pr, nil
}

// streamWriter is a ResponseWriter writing into a pipe.
type streamWriter struct {
	h       http.Header
	w       *io.PipeWriter
	status  int
	started chan struct{}
}

func (sw *streamWriter) Header() http.Header { return sw.h }
func (sw *streamWriter) WriteHeader(s int) {
	if sw.status == 0 {
		sw.status = s
		close(sw.started)
	}
}
func (sw *streamWriter) Write(b []byte) (int, error) {
	sw.WriteHeader(http.StatusOK)
	return sw.w.Write(b)
}
func (sw *streamWriter) Flush() { sw.WriteHeader(http.StatusOK) } // commits the status, as a real writer does

// redirect sends the browser to url: with HX-Redirect for htmx.
func redirect(w http.ResponseWriter, r *http.Request, url string) {
	if r.Header.Get("HX-Request") != "" {
		w.Header().Set("HX-Redirect", url)
		return
	}
	http.Redirect(w, r, url, http.StatusSeeOther)
}
