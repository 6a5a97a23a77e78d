//go:build !race

package testenv

// Race reports whether this binary was built with the race detector, as the
// README's `go test -race -timeout 20m ./...` builds the test binaries.
const Race = false
