package funcurl

import (
	"net/url"
	"slices"
	"strconv"
	"strings"

	nethttp "net/http"

	"github.com/nimbus-serverless/nimbus"
)

// CORS is a URL's cross-origin resource sharing settings, as Lambda's Cors.
type CORS struct {
	// AllowOrigins lists the origins allowed ("https://example.com") or
	// "*" for any.
	AllowOrigins []string `json:"allowOrigins,omitempty"`
	// AllowMethods lists the methods allowed (GET, PUT, HEAD, POST, PATCH,
	// DELETE) or "*" for any.
	AllowMethods []string `json:"allowMethods,omitempty"`
	// AllowHeaders lists the request headers allowed, or "*" for any.
	AllowHeaders []string `json:"allowHeaders,omitempty"`
	// ExposeHeaders lists the response headers a browser may read.
	ExposeHeaders []string `json:"exposeHeaders,omitempty"`
	// MaxAge is how long, in seconds, a browser may cache a preflight
	// answer (0 to 86400).
	MaxAge int `json:"maxAge,omitempty"`
	// AllowCredentials lets browsers send cookies and credentials.
	AllowCredentials bool `json:"allowCredentials,omitempty"`
}

// CORS limits, as Lambda's.
const (
	maxOrigins     = 100
	maxOriginLen   = 253
	maxMethods     = 6
	maxHeaders     = 100
	maxHeaderLen   = 1024
	maxCORSMaxAge  = 86400
	corsMethodList = "GET, PUT, HEAD, POST, PATCH, DELETE or *"
)

var corsMethods = []string{"GET", "PUT", "HEAD", "POST", "PATCH", "DELETE", "*"}

// Validate checks the settings as Lambda does, and that each origin is "*"
// or scheme://host[:port]. Errors wrap nimbus.ErrInvalid.
func (c *CORS) Validate() error {
	if err := checkList("cors.allowOrigins", c.AllowOrigins, maxOrigins, maxOriginLen, checkOrigin); err != nil {
		return err
	}
	if err := checkList("cors.allowMethods", c.AllowMethods, maxMethods, maxHeaderLen, checkMethod); err != nil {
		return err
	}
	if err := checkList("cors.allowHeaders", c.AllowHeaders, maxHeaders, maxHeaderLen, checkHeaderName); err != nil {
		return err
	}
	if err := checkList("cors.exposeHeaders", c.ExposeHeaders, maxHeaders, maxHeaderLen, checkHeaderName); err != nil {
		return err
	}
	if c.MaxAge < 0 || c.MaxAge > maxCORSMaxAge {
		return nimbus.Invalidf("cors.maxAge must be 0 to %d seconds, not %d", maxCORSMaxAge, c.MaxAge)
	}
	return nil
}

func checkList(field string, items []string, maxItems, maxLen int, check func(string) error) error {
	if len(items) > maxItems {
		return nimbus.Invalidf("%s has %d items; at most %d are allowed", field, len(items), maxItems)
	}
	for i, it := range items {
		if it == "" || len(it) > maxLen {
			return nimbus.Invalidf("%s[%d] must be 1 to %d characters long", field, i, maxLen)
		}
		if err := check(it); err != nil {
			return nimbus.Invalidf("%s[%d]: %v", field, i, err)
		}
	}
	return nil
}

func checkOrigin(o string) error {
	if o == "*" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nimbus.Invalidf("%q is not an origin: use scheme://host[:port] (e.g. https://example.com) or *", o)
	}
	return nil
}

func checkMethod(m string) error {
	if !slices.Contains(corsMethods, m) {
		return nimbus.Invalidf("%q is not a method CORS can allow: use %s (in capitals)", m, corsMethodList)
	}
	return nil
}

// checkHeaderName accepts a header name or "*" (any).
func checkHeaderName(h string) error {
	if !validHeaderName(h) {
		return nimbus.Invalidf("%q is not a valid HTTP header name", h)
	}
	return nil
}

// allowedOrigin returns the Access-Control-Allow-Origin value for origin, or
// "" when it is not allowed.
func (c *CORS) allowedOrigin(origin string) string {
	if origin == "" {
		return ""
	}
	for _, o := range c.AllowOrigins {
		if o == "*" {
			if c.AllowCredentials {
				return origin // browsers refuse "*" with credentials
			}
			return "*"
		}
		if strings.EqualFold(o, origin) {
			return origin
		}
	}
	return ""
}

// IsPreflight reports whether r is a CORS preflight request.
func IsPreflight(r *nethttp.Request) bool {
	return r.Method == nethttp.MethodOptions && r.Header.Get("Origin") != "" &&
		r.Header.Get("Access-Control-Request-Method") != ""
}

// Preflight writes the headers of the answer to a preflight request into
// out (the status is 200 either way; a browser refuses what is not
// allowed).
func (c *CORS) Preflight(r *nethttp.Request, out nethttp.Header) {
	c.setOrigin(r, out)
	if out.Get("Access-Control-Allow-Origin") == "" {
		return
	}
	if m := c.allowMethods(r.Header.Get("Access-Control-Request-Method")); m != "" {
		out.Set("Access-Control-Allow-Methods", m)
	}
	if h := c.allowHeaders(r.Header.Get("Access-Control-Request-Headers")); h != "" {
		out.Set("Access-Control-Allow-Headers", h)
	}
	if c.MaxAge > 0 {
		out.Set("Access-Control-Max-Age", strconv.Itoa(c.MaxAge))
	}
}

// Apply sets the CORS headers of an actual (non-preflight) answer in out,
// replacing any the function set.
func (c *CORS) Apply(r *nethttp.Request, out nethttp.Header) {
	for _, h := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials",
		"Access-Control-Expose-Headers", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Max-Age"} {
		out.Del(h)
	}
	c.setOrigin(r, out)
	if out.Get("Access-Control-Allow-Origin") != "" && len(c.ExposeHeaders) > 0 {
		out.Set("Access-Control-Expose-Headers", strings.Join(c.ExposeHeaders, ", "))
	}
}

func (c *CORS) setOrigin(r *nethttp.Request, out nethttp.Header) {
	allowed := c.allowedOrigin(r.Header.Get("Origin"))
	if allowed != "*" && len(c.AllowOrigins) > 0 {
		out.Add("Vary", "Origin")
	}
	if allowed == "" {
		return
	}
	out.Set("Access-Control-Allow-Origin", allowed)
	if c.AllowCredentials {
		out.Set("Access-Control-Allow-Credentials", "true")
	}
}

// allowMethods answers a preflight's requested method: "*" allows it.
func (c *CORS) allowMethods(requested string) string {
	if slices.Contains(c.AllowMethods, "*") {
		if requested != "" {
			return requested
		}
		return "*"
	}
	return strings.Join(c.AllowMethods, ", ")
}

// allowHeaders answers a preflight's requested headers: "*" allows them.
func (c *CORS) allowHeaders(requested string) string {
	if slices.Contains(c.AllowHeaders, "*") {
		if requested != "" {
			return requested
		}
		return "*"
	}
	return strings.Join(c.AllowHeaders, ", ")
}
