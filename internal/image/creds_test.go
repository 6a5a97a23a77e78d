package image

import (
	"archive/tar"
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestLoadCredentials(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	auth := base64.StdEncoding.EncodeToString([]byte("bob:p@ss:word"))
	for _, tc := range []struct {
		name, body string
		want       map[string]Credential
		err        string
	}{
		{"nimbus", `{"reg.example:5000": {"username": "alice", "password": "pw1"}, "ghcr.io": {"token": "tok1"}}`,
			map[string]Credential{"reg.example:5000": {Username: "alice", Password: "pw1"}, "ghcr.io": {Token: "tok1"}}, ""},
		{"docker", `{"auths": {"https://index.docker.io/v1/": {"auth": "` + auth + `"}, "quay.io": {"identitytoken": "id1"}, "helper.io": {}}, "credsStore": "desktop"}`,
			map[string]Credential{"index.docker.io": {Username: "bob", Password: "p@ss:word"}, "quay.io": {IdentityToken: "id1"}}, ""},
		{"not-json", `{"a":`, nil, "not a JSON object"},
		{"bad-auth", `{"auths": {"h": {"auth": "!!secret!!"}}}`, nil, `the "auth" of "h": not base64`},
		{"half", `{"h": {"username": "u"}}`, nil, "username without a password"},
		{"not-object", `{"h": "secret-string"}`, nil, `the entry of "h" is not an object`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LoadCredentials(write(tc.name+".json", tc.body))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Errorf("error %q holds the secret", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	if _, err := LoadCredentials(filepath.Join(dir, "none.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// FuzzExtractLayer checks that no tar stream makes the extractor panic or
// write outside its directory.
func FuzzExtractLayer(f *testing.F) {
	f.Add(tarOf(f, dir("a"), file("a/b", "x"), symlink("a/l", "../b"), tentry{name: "h", typ: tar.TypeLink, link: "a/b"}))
	f.Add(tarOf(f, file("../x", "x")))
	f.Add(tarOf(f, symlink("l", "/"), file("l/x", "x")))
	f.Add(tarOf(f, dir("d"), tentry{name: "d/.wh..wh..opq"}, tentry{name: "d/.wh.x"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		top := t.TempDir()
		root := filepath.Join(top, "root")
		if err := os.Mkdir(root, 0o755); err != nil {
			t.Fatal(err)
		}
		_, err := extractLayer(bytes.NewReader(b), root, newBudget(1<<20))
		if err != nil && !errors.Is(err, ErrInvalidImage) && !strings.Contains(err.Error(), "tar") && !strings.Contains(err.Error(), "EOF") {
			t.Logf("error: %v", err)
		}
		ents, err := os.ReadDir(top)
		if err != nil || len(ents) != 1 {
			t.Fatalf("the extractor wrote beside its root: %v %v", ents, err)
		}
		removeTree(root)
	})
}
