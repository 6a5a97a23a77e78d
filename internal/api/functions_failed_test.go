package api_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/codepkg"
	"github.com/nimbus-serverless/nimbus/internal/registry"
	"github.com/nimbus-serverless/nimbus/internal/store/mem"
)

// brokenDisk is a code cache whose unpacking always fails, as on a full disk.
type brokenDisk struct{}

func (brokenDisk) Prepare(context.Context, string, []byte) (string, error) {
	return "", errors.New("no space left on device")
}

func (brokenDisk) Ensure(context.Context, string) (string, error) {
	return "", errors.New("no space left on device")
}

// TestFailedFunction: a package that cannot be prepared leaves the function
// Failed with a reason, and invoking it is a clear conflict.
func TestFailedFunction(t *testing.T) {
	st := mem.New()
	kv, _ := st.KV(t.Context(), "functions")
	reg := openRegistry(t, registry.Config{KV: kv, Blobs: st.Blobs(), Code: brokenDisk{},
		Runtimes: []string{"python3.11"}, Limits: codepkg.DefaultLimits()})
	srv := httptest.NewServer(api.New(api.Config{Registry: reg, Invoker: echoInvoker{}}))
	defer srv.Close()
	base := srv.URL + "/2015-03-31/functions"
	body := `{"FunctionName":"broken","Runtime":"python3.11","Handler":"app.handler","Code":{"ZipFile":"` +
		base64.StdEncoding.EncodeToString(pyZip(t)) + `"}}`
	if status, typ, msg := rawCall(t, http.MethodPost, base, body); status != 201 {
		t.Fatalf("create: %d %s %s", status, typ, msg)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		fn, err := reg.Get(t.Context(), "broken")
		if err != nil {
			t.Fatal(err)
		}
		if fn.State == "Failed" {
			if !strings.Contains(fn.StateReason, "no space left") || fn.LastUpdateStatus != "Failed" {
				t.Errorf("Failed function: reason %q, last update %q", fn.StateReason, fn.LastUpdateStatus)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("state = %s, want Failed", fn.State)
		}
		time.Sleep(5 * time.Millisecond)
	}
	status, typ, msg := rawCall(t, http.MethodPost, base+"/broken/invocations", `{}`)
	if status != 409 || typ != "ResourceConflictException" || !strings.Contains(msg, "Failed") {
		t.Errorf("invoke of a Failed function = %d %s %q, want 409 ResourceConflictException", status, typ, msg)
	}
}
