package mem_test

import (
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/store"
	"github.com/nimbus-serverless/nimbus/internal/store/mem"
	"github.com/nimbus-serverless/nimbus/internal/store/storetest"
)

func TestKV(t *testing.T) {
	storetest.TestKV(t, func(*testing.T) store.KV { return mem.NewKV() })
}

func TestBlobs(t *testing.T) {
	storetest.TestBlobs(t, func(*testing.T) store.Blobs { return mem.NewBlobs() })
}
