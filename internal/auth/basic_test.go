package auth

import (
	"errors"
	"net/http"
	"testing"
)

func TestVerifyBasic(t *testing.T) {
	v := &Verifier{Secrets: func(id string) (string, Principal, bool) {
		if id == "AKID" {
			return "s3cret", Principal{Name: "scraper", AccessKeyID: id, Role: Admin, Functions: "*"}, true
		}
		return "", Principal{}, false
	}}
	tests := []struct {
		name       string
		set        func(*http.Request)
		wantType   string // "" for success
		wantBasic  bool
		wantPrinci string
	}{
		{"right secret", func(r *http.Request) { r.SetBasicAuth("AKID", "s3cret") }, "", true, "scraper"},
		{"wrong secret", func(r *http.Request) { r.SetBasicAuth("AKID", "s3cres") }, "UnrecognizedClientException", true, ""},
		{"prefix of the secret", func(r *http.Request) { r.SetBasicAuth("AKID", "s3c") }, "UnrecognizedClientException", true, ""},
		{"unknown key", func(r *http.Request) { r.SetBasicAuth("AKIX", "s3cret") }, "UnrecognizedClientException", true, ""},
		{"no user", func(r *http.Request) { r.SetBasicAuth("", "s3cret") }, "MissingAuthenticationTokenException", true, ""},
		{"malformed", func(r *http.Request) { r.Header.Set("Authorization", "Basic !!!") }, "MissingAuthenticationTokenException", true, ""},
		{"lower-case scheme", func(r *http.Request) { r.Header.Set("Authorization", "basic QUtJRDpzM2NyZXQ=") }, "", true, "scraper"},
		{"none", func(*http.Request) {}, "MissingAuthenticationTokenException", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodGet, "http://x/metrics", nil)
			tt.set(r)
			if got := IsBasic(r); got != tt.wantBasic {
				t.Errorf("IsBasic = %v, want %v", got, tt.wantBasic)
			}
			p, err := v.VerifyBasic(r)
			var ae *Error
			switch {
			case tt.wantType == "" && (err != nil || p.Name != tt.wantPrinci):
				t.Errorf("VerifyBasic = %+v, %v; want %s", p, err, tt.wantPrinci)
			case tt.wantType != "" && (!errors.As(err, &ae) || ae.Type != tt.wantType || ae.Status != http.StatusForbidden):
				t.Errorf("VerifyBasic error = %v, want 403 %s", err, tt.wantType)
			}
		})
	}
}
