package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/auth"
)

// A session is a signed cookie naming the access key it was opened with
// and when it ends: nothing is stored on the node, so a session outlives a
// restart of the node and works on every node sharing the node key. Each
// request looks the key up again, so deleting or rotating a key ends its
// sessions at once.
const (
	sessionCookie = "nimbus_session"
	loginCookie   = "nimbus_login" // the login form's CSRF token, before a session exists
	csrfField     = "csrf"
	csrfHeader    = "X-CSRF-Token"
)

type session struct {
	KeyID   string `json:"k"`
	Expires int64  `json:"e"` // Unix seconds
	Nonce   string `json:"n"`
}

// principal is who r comes from: its session's key, or auth.Anonymous
// when authentication is off; ok is false without a valid session.
func (c *Console) principal(r *http.Request) (p auth.Principal, token string, ok bool) {
	if c.cfg.Secrets == nil {
		return auth.Anonymous, c.mac("csrf|anonymous"), true
	}
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return p, "", false
	}
	s, ok := c.openSession(ck.Value)
	if !ok {
		return p, "", false
	}
	if _, p, ok = c.cfg.Secrets(s.KeyID); !ok {
		return p, "", false
	}
	return p, c.mac("csrf|" + ck.Value), true
}

// sealSession returns the cookie value of s: base64 of its JSON, a dot,
// and the MAC of that.
func (c *Console) sealSession(s session) string {
	b, _ := json.Marshal(s)
	v := base64.RawURLEncoding.EncodeToString(b)
	return v + "." + c.mac("session|"+v)
}

func (c *Console) openSession(v string) (session, bool) {
	var s session
	body, sig, ok := strings.Cut(v, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(c.mac("session|"+body))) {
		return s, false
	}
	b, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil || json.Unmarshal(b, &s) != nil {
		return s, false
	}
	return s, c.cfg.Now().Unix() < s.Expires
}

// mac is the base64 HMAC-SHA256 of msg under the session key.
func (c *Console) mac(msg string) string {
	m := hmac.New(sha256.New, c.cfg.SessionKey)
	m.Write([]byte(msg))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func randomToken() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// cookie returns a console cookie: HttpOnly, SameSite=Strict, Secure when
// the request came over TLS, scoped to the console.
func cookie(r *http.Request, name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: Prefix, MaxAge: maxAge, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil}
}

// sameOrigin refuses a state-changing request whose Origin (or, lacking
// one, Referer) names another site: a second line behind the CSRF token
// and SameSite cookies.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		o = r.Header.Get("Referer")
	}
	if o == "" || o == "null" && r.Header.Get("Sec-Fetch-Site") == "same-origin" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// checkCSRF checks a form's or htmx request's CSRF token.
func checkCSRF(r *http.Request, want string) bool {
	got := r.Header.Get(csrfHeader)
	if got == "" {
		got = r.PostFormValue(csrfField)
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1 && sameOrigin(r)
}

// loginView is the login page's data.
type loginView struct {
	Next, Error, Token, KeyID string
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if c.cfg.Secrets == nil {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	if _, _, ok := c.principal(r); ok {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	c.showLogin(w, r, http.StatusOK, loginView{Next: safeNext(r.URL.Query().Get("next"))})
}

// showLogin renders the login form with a fresh CSRF token in a cookie and
// in the form (a double submit: another site can set neither).
func (c *Console) showLogin(w http.ResponseWriter, r *http.Request, status int, v loginView) {
	v.Token = randomToken()
	http.SetCookie(w, cookie(r, loginCookie, v.Token, 3600))
	c.render(w, r, status, "login", page{Title: "Sign in", Data: v})
}

// login is POST /console/login: access_key_id and secret_access_key.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	if c.cfg.Secrets == nil {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	v := loginView{Next: safeNext(r.PostFormValue("next")), KeyID: strings.TrimSpace(r.PostFormValue("access_key_id"))}
	ck, err := r.Cookie(loginCookie)
	if err != nil || ck.Value == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(r.PostFormValue(csrfField))) != 1 || !sameOrigin(r) {
		v.Error = "The sign-in form expired. Please try again."
		c.showLogin(w, r, http.StatusForbidden, v)
		return
	}
	if err := c.cfg.Limiter.Check(r); err != nil {
		v.Error = "Too many failed sign-ins from this address. Wait a minute and try again."
		c.showLogin(w, r, http.StatusTooManyRequests, v)
		return
	}
	secret := r.PostFormValue("secret_access_key")
	want, _, found := c.cfg.Secrets(v.KeyID)
	if !found {
		want = strings.Repeat("x", len(secret)) // compare anyway: an unknown key takes as long
	}
	if v.KeyID == "" || subtle.ConstantTimeCompare([]byte(secret), []byte(want)) != 1 || !found {
		c.cfg.Limiter.Failed(r)
		v.Error = "The access key id or secret is not right."
		c.showLogin(w, r, http.StatusUnauthorized, v)
		return
	}
	s := session{KeyID: v.KeyID, Expires: c.cfg.Now().Add(c.cfg.SessionTTL).Unix(), Nonce: randomToken()}
	http.SetCookie(w, cookie(r, sessionCookie, c.sealSession(s), int(c.cfg.SessionTTL/time.Second)))
	http.SetCookie(w, cookie(r, loginCookie, "", -1))
	http.Redirect(w, r, v.Next, http.StatusSeeOther)
}

// maxLinkLife bounds how long a login link may be valid.
const maxLinkLife = 5 * time.Minute

// loginLink is GET /console/login/link?X-Amz-...: a login link printed by
// `nimbus console`, a URL presigned (SigV4) with the CLI's key for at
// most maxLinkLife. It opens a session for that key, as the login form
// does, without the secret ever leaving the CLI.
func (c *Console) loginLink(w http.ResponseWriter, r *http.Request) {
	if c.cfg.Secrets == nil || c.cfg.Verify == nil {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	fail := func(status int, msg string) {
		c.showLogin(w, r, status, loginView{Next: Prefix, Error: msg})
	}
	if secs, err := strconv.Atoi(r.URL.Query().Get("X-Amz-Expires")); err != nil || time.Duration(secs)*time.Second > maxLinkLife {
		fail(http.StatusForbidden, "This sign-in link is not valid: a link of nimbus console lasts at most 5 minutes. Run nimbus console again.")
		return
	}
	if err := c.cfg.Limiter.Check(r); err != nil {
		fail(http.StatusTooManyRequests, "Too many failed sign-ins from this address. Wait a minute and try again.")
		return
	}
	p, err := c.cfg.Verify(r)
	if err != nil {
		c.cfg.Limiter.Failed(r)
		msg := err.Error()
		if ae, ok := err.(*auth.Error); ok {
			msg = ae.Message
		}
		fail(http.StatusForbidden, "This sign-in link is not valid ("+msg+"). Run nimbus console again, or sign in with the key.")
		return
	}
	s := session{KeyID: p.AccessKeyID, Expires: c.cfg.Now().Add(c.cfg.SessionTTL).Unix(), Nonce: randomToken()}
	http.SetCookie(w, cookie(r, sessionCookie, c.sealSession(s), int(c.cfg.SessionTTL/time.Second)))
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, _ *visit) error {
	http.SetCookie(w, cookie(r, sessionCookie, "", -1))
	redirect(w, r, Prefix+"login")
	return nil
}

// safeNext keeps a post-login destination inside the console.
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix) || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return Prefix
	}
	return next
}
