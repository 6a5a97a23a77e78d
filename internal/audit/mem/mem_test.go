package mem_test

import (
	"testing"

	"github.com/nimbus-serverless/nimbus/internal/audit"
	"github.com/nimbus-serverless/nimbus/internal/audit/audittest"
	"github.com/nimbus-serverless/nimbus/internal/audit/mem"
)

func TestSuite(t *testing.T) {
	audittest.Run(t, audittest.Harness{Open: func(*testing.T) audit.Log { return mem.New() }})
}
