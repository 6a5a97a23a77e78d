package nodetest

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

// Credentials reads the key of the credentials file a node with
// authentication wrote (its data dir's "credentials", the AWS
// shared-credentials format).
func Credentials(t testing.TB, path string) (id, secret string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		switch k, v = strings.TrimSpace(k), strings.TrimSpace(v); {
		case !ok:
		case k == "aws_access_key_id":
			id = v
		case k == "aws_secret_access_key":
			secret = v
		}
	}
	if id == "" || secret == "" {
		t.Fatalf("no key in %s", path)
	}
	return id, secret
}
