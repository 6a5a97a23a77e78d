//go:build !linux

package process

import (
	"context"
	"errors"

	"github.com/nimbus-serverless/nimbus/internal/sandbox"
)

// errUnsupported is returned by New off Linux.
var errUnsupported = errors.New("process: the process sandbox needs Linux")

// Backend starts instances as processes; off Linux it cannot be created.
type Backend struct{}

var _ sandbox.Backend = (*Backend)(nil)

// New fails off Linux.
func New(cfg Config) (*Backend, error) { return nil, errUnsupported }

// MaybeInit does nothing off Linux.
func MaybeInit() {}

// Describe says the backend is unavailable.
func (b *Backend) Describe() string { return "process sandbox: unavailable (needs Linux)" }

// Start fails off Linux.
func (b *Backend) Start(ctx context.Context, spec sandbox.Spec) (sandbox.Instance, error) {
	return nil, errUnsupported
}

// Close does nothing off Linux.
func (b *Backend) Close(context.Context) error { return nil }

// Ready fails off Linux.
func (b *Backend) Ready() error { return errUnsupported }
