package api_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// TestListFunctionsMarkers: a page starts after its marker, whether or not
// the marker names a function (it may have been deleted since), and ends
// with a NextMarker only when more functions follow; bad markers and page
// sizes are refused with Lambda's errors.
func TestListFunctionsMarkers(t *testing.T) {
	h := newMemServer(t, t.TempDir())
	zip := base64.StdEncoding.EncodeToString(pyZip(t))
	for _, name := range []string{"c", "a", "d", "b"} {
		body := `{"FunctionName":"` + name + `","Runtime":"python3.11","Handler":"app.handler","Code":{"ZipFile":"` + zip + `"}}`
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/2015-03-31/functions", bytes.NewBufferString(body)))
		if rec.Code != http.StatusCreated {
			t.Fatalf("create %s: %d %s", name, rec.Code, rec.Body)
		}
	}
	tests := []struct {
		query string
		names []string
		next  string
	}{
		{"", []string{"a", "b", "c", "d"}, ""},
		{"?MaxItems=2", []string{"a", "b"}, "b"},
		{"?MaxItems=2&Marker=b", []string{"c", "d"}, ""},
		{"?MaxItems=1&Marker=b", []string{"c"}, "c"},
		{"?MaxItems=2&Marker=bb", []string{"c", "d"}, ""},
		{"?Marker=d", []string{}, ""},
		{"?MaxItems=10000&Marker=0", []string{"a", "b", "c", "d"}, ""},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/2015-03-31/functions/"+tt.query, nil))
		var out struct {
			Functions  []struct{ FunctionName string }
			NextMarker *string
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); rec.Code != http.StatusOK || err != nil {
			t.Fatalf("%s: %d %s", tt.query, rec.Code, rec.Body)
		}
		var names []string
		for _, f := range out.Functions {
			names = append(names, f.FunctionName)
		}
		next := ""
		if out.NextMarker != nil {
			next = *out.NextMarker
		}
		if !slices.Equal(names, tt.names) || next != tt.next || out.Functions == nil {
			t.Errorf("%s: %v next %q, want %v next %q", tt.query, names, next, tt.names, tt.next)
		}
	}
	for _, bad := range []struct{ query, typ, msg string }{
		{"?MaxItems=0", "ValidationException", "maxItems"},
		{"?MaxItems=10001", "ValidationException", "maxItems"},
		{"?MaxItems=x", "ValidationException", "maxItems"},
		{"?Marker=a%2Fb", "InvalidParameterValueException", "Marker"},
		{"?Marker=" + strings.Repeat("a", 65), "InvalidParameterValueException", "Marker"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/2015-03-31/functions/"+bad.query, nil))
		if rec.Code != http.StatusBadRequest || rec.Header().Get("X-Amzn-Errortype") != bad.typ || !strings.Contains(rec.Body.String(), bad.msg) {
			t.Errorf("%s: %d %s %s, want 400 %s about %s", bad.query, rec.Code, rec.Header().Get("X-Amzn-Errortype"), rec.Body, bad.typ, bad.msg)
		}
	}
}
