package funcurl

import (
	"testing"

	nethttp "net/http"
	"net/http/httptest"
)

func preflight(origin, method, headers string) *nethttp.Request {
	r := httptest.NewRequest(nethttp.MethodOptions, "/", nil)
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	if method != "" {
		r.Header.Set("Access-Control-Request-Method", method)
	}
	if headers != "" {
		r.Header.Set("Access-Control-Request-Headers", headers)
	}
	return r
}

func TestIsPreflight(t *testing.T) {
	if !IsPreflight(preflight("https://a.example", "POST", "")) {
		t.Error("a preflight was not recognised")
	}
	if IsPreflight(preflight("https://a.example", "", "")) || IsPreflight(preflight("", "POST", "")) {
		t.Error("an OPTIONS request without Origin or Access-Control-Request-Method was taken as a preflight")
	}
	get := httptest.NewRequest(nethttp.MethodGet, "/", nil)
	get.Header.Set("Origin", "https://a.example")
	get.Header.Set("Access-Control-Request-Method", "GET")
	if IsPreflight(get) {
		t.Error("a GET was taken as a preflight")
	}
}

func TestCORSPreflight(t *testing.T) {
	listed := &CORS{AllowOrigins: []string{"https://a.example"}, AllowMethods: []string{"GET", "POST"},
		AllowHeaders: []string{"content-type", "x-nimbus-key"}, MaxAge: 300, AllowCredentials: true}
	star := &CORS{AllowOrigins: []string{"*"}, AllowMethods: []string{"*"}, AllowHeaders: []string{"*"}}
	tests := []struct {
		name string
		c    *CORS
		r    *nethttp.Request
		want map[string]string
	}{
		{"listed origin", listed, preflight("https://a.example", "POST", "content-type"), map[string]string{
			"Access-Control-Allow-Origin": "https://a.example", "Access-Control-Allow-Methods": "GET, POST",
			"Access-Control-Allow-Headers": "content-type, x-nimbus-key", "Access-Control-Max-Age": "300",
			"Access-Control-Allow-Credentials": "true", "Vary": "Origin"}},
		{"origin case", listed, preflight("HTTPS://A.EXAMPLE", "POST", ""), map[string]string{
			"Access-Control-Allow-Origin": "HTTPS://A.EXAMPLE"}},
		{"other origin", listed, preflight("https://evil.example", "POST", ""), map[string]string{
			"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": "", "Vary": "Origin"}},
		{"star echoes", star, preflight("https://b.example", "PATCH", "x-one, x-two"), map[string]string{
			"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "PATCH",
			"Access-Control-Allow-Headers": "x-one, x-two", "Access-Control-Max-Age": "", "Vary": ""}},
		{"star with credentials", &CORS{AllowOrigins: []string{"*"}, AllowCredentials: true}, preflight("https://b.example", "GET", ""),
			map[string]string{"Access-Control-Allow-Origin": "https://b.example", "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := nethttp.Header{}
			tt.c.Preflight(tt.r, out)
			for k, want := range tt.want {
				if got := out.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestCORSApply(t *testing.T) {
	c := &CORS{AllowOrigins: []string{"https://a.example"}, ExposeHeaders: []string{"x-total", "x-page"}}
	r := httptest.NewRequest(nethttp.MethodGet, "/", nil)
	r.Header.Set("Origin", "https://a.example")
	out := nethttp.Header{"Access-Control-Allow-Origin": {"*"}, "Access-Control-Max-Age": {"9"}, "X-Own": {"1"}}
	c.Apply(r, out)
	if got := out.Get("Access-Control-Allow-Origin"); got != "https://a.example" {
		t.Errorf("Allow-Origin = %q (the function's must be replaced)", got)
	}
	if got := out.Get("Access-Control-Expose-Headers"); got != "x-total, x-page" {
		t.Errorf("Expose-Headers = %q", got)
	}
	if out.Get("Access-Control-Max-Age") != "" || out.Get("X-Own") != "1" {
		t.Errorf("headers after Apply: %v", out)
	}
	r.Header.Set("Origin", "https://b.example")
	out = nethttp.Header{}
	c.Apply(r, out)
	if out.Get("Access-Control-Allow-Origin") != "" || out.Get("Access-Control-Expose-Headers") != "" {
		t.Errorf("an unlisted origin got CORS headers: %v", out)
	}
}
