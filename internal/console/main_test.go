package console_test

import (
	"os"
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/sandbox/process"
)

func TestMain(m *testing.M) {
	process.MaybeInit()
	os.Exit(m.Run())
}
