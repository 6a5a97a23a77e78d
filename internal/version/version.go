// Package version is the version of the nimbus binary, shown by
// `nimbus --version` and GET /healthz.
package version

import (
	"runtime/debug"
	"sync"
)

// Version is set when the binary is built:
//
//	go build -ldflags "-X github.com/nimbus-serverless/nimbus/internal/version.Version=1.4.0" ./cmd/nimbus
//
// Left empty, String falls back on what the Go toolchain recorded.
var Version string

// String returns Version; without one, the module version the toolchain
// recorded (a tag, or a pseudo-version from the VCS), or "dev" with the
// VCS revision when there is one, or "dev".
func String() string { return resolved() }

var resolved = sync.OnceValue(func() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	return fromBuildInfo(bi)
})

// fromBuildInfo picks the version a build recorded.
func fromBuildInfo(bi *debug.BuildInfo) string {
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	v := "dev-" + rev[:min(12, len(rev))]
	if dirty {
		v += "-dirty"
	}
	return v
}
