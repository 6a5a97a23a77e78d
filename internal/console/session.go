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
	"sync"
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
	Credentials               string // where the first admin key is
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
	v.Token = c.loginToken(w, r)
	v.Credentials = c.cfg.Credentials
	c.render(w, r, status, "login", page{Title: "Sign in", Data: v})
}

// loginToken is the sign-in forms' CSRF token, in a cookie: one per
// browser, kept while it is fresh, so that a second sign-in tab does not
// void the first one's form.
func (c *Console) loginToken(w http.ResponseWriter, r *http.Request) string {
	token := randomToken()
	if ck, err := r.Cookie(loginCookie); err == nil && len(ck.Value) == len(token) {
		token = ck.Value
	}
	http.SetCookie(w, cookie(r, loginCookie, token, 3600))
	return token
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

// maxLinkLife bounds how long a login link may be valid: from now to the
// end of its signature's validity, whatever date it claims.
const maxLinkLife = 5 * time.Minute

// linkView is the confirmation page of a login link.
type linkView struct {
	Key        auth.Principal
	Ticket     string
	Token      string
	Next       string
	Expires    time.Time
	Credential string
}

// loginLink is GET /console/login/link?X-Amz-...: a login link printed by
// `nimbus console`, a URL presigned (SigV4) with the CLI's key for at
// most maxLinkLife. It changes nothing: it asks to confirm the sign-in
// as that key (a page from another site cannot sign a visitor in as its
// own key), and the confirmation (linkConfirm) opens the session, once
// per link, without the secret ever leaving the CLI.
func (c *Console) loginLink(w http.ResponseWriter, r *http.Request) {
	if c.cfg.Secrets == nil || c.cfg.Verify == nil {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	q := r.URL.Query()
	secs, err := strconv.Atoi(q.Get("X-Amz-Expires"))
	date, derr := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	ends := date.Add(time.Duration(secs) * time.Second)
	if err != nil || derr != nil || ends.Sub(c.cfg.Now()) > maxLinkLife {
		c.linkFailed(w, r, http.StatusForbidden, "This sign-in link is not valid: a link of nimbus console lasts at most 5 minutes. Run nimbus console again.")
		return
	}
	if err := c.cfg.Limiter.Check(r); err != nil {
		c.linkFailed(w, r, http.StatusTooManyRequests, "Too many failed sign-ins from this address. Wait a minute and try again.")
		return
	}
	p, err := c.cfg.Verify(r)
	if err != nil {
		c.cfg.Limiter.Failed(r)
		msg := err.Error()
		if ae, ok := err.(*auth.Error); ok {
			msg = ae.Message
		}
		c.linkFailed(w, r, http.StatusForbidden, "This sign-in link is not valid ("+msg+"). Run nimbus console again, or sign in with the key.")
		return
	}
	if c.links.used(q.Get("X-Amz-Signature"), c.cfg.Now()) {
		c.linkFailed(w, r, http.StatusForbidden, "This sign-in link was used already. Run nimbus console again.")
		return
	}
	next := safeNext(q.Get("next"))
	v := linkView{Key: p, Next: next, Expires: ends, Token: c.loginToken(w, r),
		Ticket: c.ticket(p.AccessKeyID, ends, q.Get("X-Amz-Signature"), next)}
	c.render(w, r, http.StatusOK, "link", page{Title: "Sign in", Data: v})
}

// linkFailed shows the login form with why a link did not sign in.
func (c *Console) linkFailed(w http.ResponseWriter, r *http.Request, status int, msg string) {
	c.showLogin(w, r, status, loginView{Next: Prefix, Error: msg})
}

// ticket binds a confirmed link's key, expiry, signature and destination
// under the session key: what the confirmation form carries.
func (c *Console) ticket(keyID string, ends time.Time, sig, next string) string {
	body := strings.Join([]string{keyID, strconv.FormatInt(ends.Unix(), 10), sig, next}, "|")
	return base64.RawURLEncoding.EncodeToString([]byte(body)) + "." + c.mac("link|"+body)
}

// linkConfirm is POST /console/login/link: the confirmation of a login
// link's sign-in, with the ticket of its page.
func (c *Console) linkConfirm(w http.ResponseWriter, r *http.Request) {
	if c.cfg.Secrets == nil || c.cfg.Verify == nil {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	ck, err := r.Cookie(loginCookie)
	if err != nil || ck.Value == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(r.PostFormValue(csrfField))) != 1 || !sameOrigin(r) {
		c.linkFailed(w, r, http.StatusForbidden, "The sign-in form expired. Please try again.")
		return
	}
	body, mac, ok := strings.Cut(r.PostFormValue("ticket"), ".")
	raw, derr := base64.RawURLEncoding.DecodeString(body)
	parts := strings.Split(string(raw), "|")
	if !ok || derr != nil || len(parts) != 4 || !hmac.Equal([]byte(mac), []byte(c.mac("link|"+string(raw)))) {
		c.linkFailed(w, r, http.StatusForbidden, "This sign-in link is not valid. Run nimbus console again.")
		return
	}
	keyID, sig, next := parts[0], parts[2], parts[3]
	ends, _ := strconv.ParseInt(parts[1], 10, 64)
	now := c.cfg.Now()
	if now.Unix() >= ends {
		c.linkFailed(w, r, http.StatusForbidden, "This sign-in link has expired. Run nimbus console again.")
		return
	}
	if !c.links.use(sig, time.Unix(ends, 0), now) {
		c.linkFailed(w, r, http.StatusForbidden, "This sign-in link was used already. Run nimbus console again.")
		return
	}
	if _, _, found := c.cfg.Secrets(keyID); !found {
		c.linkFailed(w, r, http.StatusForbidden, "The key of this sign-in link no longer exists.")
		return
	}
	s := session{KeyID: keyID, Expires: now.Add(c.cfg.SessionTTL).Unix(), Nonce: randomToken()}
	http.SetCookie(w, cookie(r, sessionCookie, c.sealSession(s), int(c.cfg.SessionTTL/time.Second)))
	http.SetCookie(w, cookie(r, loginCookie, "", -1))
	http.Redirect(w, r, safeNext(next), http.StatusSeeOther)
}

// usedLinks remembers the signatures of the login links used on this
// node until they expire: a link signs in once.
type usedLinks struct {
	mu   sync.Mutex
	seen map[string]time.Time // signature -> the link's expiry
}

// used reports whether the link of signature sig was used.
func (u *usedLinks) used(sig string, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	ends, ok := u.seen[sig]
	return ok && now.Before(ends)
}

// use marks a link used, and reports whether it was not already.
func (u *usedLinks) use(sig string, ends, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.seen == nil {
		u.seen = map[string]time.Time{}
	}
	for s, e := range u.seen {
		if !now.Before(e) {
			delete(u.seen, s)
		}
	}
	if e, ok := u.seen[sig]; ok && now.Before(e) {
		return false
	}
	u.seen[sig] = ends
	return true
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
