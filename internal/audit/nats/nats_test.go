package nats_test

import (
	"context"
	"testing"

	"go.uber.org/goleak"

	"github.com/nimbus-serverless/nimbus/internal/audit"
	"github.com/nimbus-serverless/nimbus/internal/audit/audittest"
	auditnats "github.com/nimbus-serverless/nimbus/internal/audit/nats"
	natsstore "github.com/nimbus-serverless/nimbus/internal/store/nats"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// stores are the embedded stores of the open Logs, to reopen them.
type opened struct {
	s   *natsstore.Store
	dir string
}

// TestSuite runs the suite against the embedded server the store runs
// (file storage, sync_always), restarting it for Reopen.
func TestSuite(t *testing.T) {
	stores := map[audit.Log]opened{}
	open := func(t *testing.T, dir string) audit.Log {
		s, err := natsstore.Open(t.Context(), natsstore.Config{DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close(context.Background()) })
		l, err := auditnats.Open(t.Context(), auditnats.Config{JS: s.JetStream(), Health: s.Healthy})
		if err != nil {
			t.Fatal(err)
		}
		stores[l] = opened{s, dir}
		return l
	}
	audittest.Run(t, audittest.Harness{
		Open: func(t *testing.T) audit.Log { return open(t, t.TempDir()) },
		Reopen: func(t *testing.T, l audit.Log) audit.Log {
			o := stores[l]
			if err := o.s.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			return open(t, o.dir)
		},
	})
}
