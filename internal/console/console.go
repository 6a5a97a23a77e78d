// Package console is Nimbus's web console: server-rendered pages
// (html/template, assets embedded in the binary) at /console/ on every
// node. A visitor signs in with an access key; every page's data and every
// action then goes through the node's own API handler, in the process, as
// that key (api.Authenticated): the console sees and does exactly what the
// key may through the API, and the audit trail records it the same way.
package console

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/auth"
)

// Prefix is where the console is served.
const Prefix = "/console/"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// NodeInfo is what the overview shows of the node serving the console.
type NodeInfo struct {
	ID, Version, Address string
	Started              time.Time
	// Instances are the node's instances (starting ones included), Busy
	// those running a request; MemoryMB their memory limits summed.
	Instances, Busy, MemoryMB int
	MaxInstances, MaxMemoryMB int
}

// Config wires a Console.
type Config struct {
	// API is the node's API handler (api.Server): the console's only way
	// to read and change anything.
	API http.Handler
	// Secrets finds an access key's secret and principal for the login;
	// nil turns authentication off (--auth none): every visitor is
	// auth.Anonymous and no login is asked.
	Secrets auth.Secrets
	// Verify checks a SigV4-presigned request (a login link of `nimbus
	// console`) and returns its key's principal; nil with Secrets nil.
	Verify func(*http.Request) (auth.Principal, error)
	// Credentials is the file where the node wrote its first admin key,
	// for the login page's hint ("" to give none).
	Credentials string
	// Limiter bounds failed logins per client address (nil: no bound).
	Limiter *auth.Limiter
	// SessionKey signs session cookies and CSRF tokens (32 bytes, the same
	// on every node that shares the node key, so a session outlives a
	// restart and works on each node).
	SessionKey []byte
	// SessionTTL is how long a login lasts (0: 12 hours).
	SessionTTL time.Duration
	// Node describes the node serving the console.
	Node   func() NodeInfo
	Logger *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Console serves the web console under Prefix.
type Console struct {
	cfg    Config
	log    *slog.Logger
	pages  map[string]*template.Template
	assets http.Handler
	etags  map[string]string // asset path -> ETag
	mux    *http.ServeMux
	links  usedLinks // login links used (session.go)
}

// New returns a Console. It fails only when its embedded templates do not
// parse (a build defect).
func New(cfg Config) (*Console, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.Node == nil {
		cfg.Node = func() NodeInfo { return NodeInfo{} }
	}
	pages, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	sub, _ := fs.Sub(assetFS, "assets")
	c := &Console{cfg: cfg, log: cfg.Logger, pages: pages, mux: http.NewServeMux(),
		assets: http.StripPrefix(Prefix+"assets/", http.FileServerFS(sub))}
	c.etags = etagsOf(sub)
	c.routes()
	return c, nil
}

func (c *Console) routes() {
	c.mux.HandleFunc("GET /console", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
	})
	c.mux.HandleFunc("GET /console/assets/", c.serveAsset)
	c.mux.HandleFunc("GET /console/login", c.loginPage)
	c.mux.HandleFunc("POST /console/login", c.login)
	c.mux.HandleFunc("GET /console/login/link", c.loginLink)
	c.mux.HandleFunc("POST /console/login/link", c.linkConfirm)
	c.handle("POST /console/logout", c.logout)
	c.handle("GET /console/ping", c.ping)
	c.handle("GET /console/{$}", c.overview)
	c.handle("GET /console/functions", c.functions)
	c.handle("GET /console/functions/{$}", c.functions)
	c.handle("GET /console/functions/{name}", c.function)
	c.handle("GET /console/functions/{name}/charts", c.functionCharts)
	c.handle("GET /console/functions/{name}/invocations", c.functionInvocations)
	c.handle("GET /console/functions/{name}/logs", c.functionLogs)
	c.handle("GET /console/functions/{name}/logs/stream", c.functionLogStream)
	c.handle("POST /console/functions/{name}/invoke", c.functionInvoke)
	c.handle("GET /console/functions/{name}/triggers", c.functionTriggers)
	c.handle("POST /console/functions/{name}/triggers/{trigger}/{action}", c.triggerAction)
	c.handle("GET /console/functions/{name}/async", c.functionAsync)
	c.handle("POST /console/functions/{name}/tasks/{id}/stop", c.taskStop)
	c.handle("POST /console/functions/{name}/dead-letters/redrive", c.deadLettersRedrive)
	c.handle("GET /console/usage", c.usage)
	c.handle("GET /console/usage.csv", c.usageCSV)
	c.mux.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
		c.notFound(w, r)
	})
}

// ServeHTTP implements http.Handler, with the headers every answer of the
// console carries.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	c.mux.ServeHTTP(w, r)
}

// serveAsset serves an embedded asset. Their names carry no version, so
// browsers revalidate them, by ETag (a hash of the content: embedded
// files have no modification time).
func (c *Console) serveAsset(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-cache")
	if tag, ok := c.etags[strings.TrimPrefix(r.URL.Path, Prefix+"assets/")]; ok {
		w.Header().Set("ETag", tag)
	}
	c.assets.ServeHTTP(w, r)
}

// etagsOf hashes every file of fsys.
func etagsOf(fsys fs.FS) map[string]string {
	tags := map[string]string{}
	_ = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err == nil {
			sum := sha256.Sum256(b)
			tags[p] = `"` + hex.EncodeToString(sum[:8]) + `"`
		}
		return nil
	})
	return tags
}
