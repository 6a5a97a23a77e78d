package cli

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/codepkg"
	"github.com/nimbus-serverless/nimbus/internal/registry"
)

// functionSpec is one function as deploy describes it, from flags or from a
// manifest entry. Zero values mean the defaults: deploy is declarative, so
// an update resets what the spec leaves out.
type functionSpec struct {
	Name        string
	Runtime     string
	Handler     string
	Code        string // a directory or a .zip file
	Description string
	MemoryMB    int // 0: nimbus.DefaultMemoryMB
	Timeout     int // seconds; 0: nimbus.DefaultTimeout
	Environment map[string]string
	// HTTPConcurrency is sent only when set; an update leaves it alone
	// otherwise.
	HTTPConcurrency int
	// IdleTimeout (seconds) is sent only when set, likewise.
	IdleTimeout int
	// Network is the network of the function's instances (egress, none
	// or host), sent only when set, likewise.
	Network string
	// EphemeralMB sizes an instance's /tmp; 0: nimbus.DefaultEphemeralMB.
	EphemeralMB int
	// Tracing is Active or PassThrough; "": PassThrough.
	Tracing string
	// LogFormat is JSON or Text (""); the levels apply to JSON only.
	LogFormat, AppLogLevel, SystemLogLevel string
	// DeadLetter receives the events of asynchronous invocations that
	// failed for good: a function, an http(s) URL or nats:SUBJECT.
	DeadLetter string
	// Triggers, when not nil, are all the function's triggers (a
	// manifest's triggers: list); nil leaves them alone.
	Triggers *[]triggerSpec
	// Layers, when not nil, are the function's layer version ARNs; nil
	// leaves them alone.
	Layers *[]string
	// Publish publishes a version after the deploy; Aliases then point
	// at versions (manifest_versions.go).
	Publish bool
	Aliases map[string]aliasSpec
	// Image is a container image run instead of Code (PackageType Image);
	// ImageCommand, ImageEntrypoint and ImageWorkdir are its ImageConfig.
	Image                         string
	ImageCommand, ImageEntrypoint []string
	ImageWorkdir                  string
	// ImagePort is the port an image of runtime http serves on (0: 9000).
	ImagePort int
}

// maxDescription is Lambda's limit on a description, in characters.
const maxDescription = 256

// maxHTTPConcurrency is the most requests one instance may take at once.
const maxHTTPConcurrency = 1000

// validate checks what can be checked without the server: all of
// problems, joined.
func (s *functionSpec) validate() error { return errors.Join(s.problems()...) }

// problems lists what is wrong with s. Messages name the fields as the
// manifest spells them.
func (s *functionSpec) problems() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if err := validateName(s.Name); err != nil {
		errs = append(errs, err)
	}
	switch {
	case s.Image != "" && s.Runtime != "" && s.Runtime != "http":
		add("runtime of an image is none (Lambda's Runtime API) or http (an HTTP server on port 9000), not %s", s.Runtime)
	case s.Image != "" && s.Code != "":
		add("give code or an image, not both")
	case s.Image != "":
	case s.Runtime == "":
		add("runtime is required (see `nimbus runtimes`)")
	case strings.ContainsFunc(s.Runtime, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		add("runtime %q must not contain spaces or control characters", s.Runtime)
	}
	if s.Handler == "" && s.Image == "" && needsHandler(s.Runtime) {
		add("handler is required for runtime %s (for example app.handler)", s.Runtime)
	}
	if s.Handler != "" && (len(s.Handler) > 128 || strings.ContainsFunc(s.Handler, func(r rune) bool { return r <= ' ' || r == 0x7f })) {
		add("handler %q must be 1 to 128 characters without spaces", s.Handler)
	}
	if s.Code == "" && s.Image == "" {
		add("code is required: a directory or a .zip file")
	}
	if n := utf8.RuneCountInString(s.Description); n > maxDescription {
		add("description is %d characters long, more than %d", n, maxDescription)
	}
	if m := s.MemoryMB; m != 0 && (m < nimbus.MinMemoryMB || m > nimbus.MaxMemoryMB) {
		add("memory must be %d to %d MB, not %d", nimbus.MinMemoryMB, nimbus.MaxMemoryMB, m)
	}
	if t := s.Timeout; t != 0 && (t < nimbus.MinTimeout || t > nimbus.MaxTimeout) {
		add("timeout must be %ds to %ds, not %ds", nimbus.MinTimeout, nimbus.MaxTimeout, t)
	}
	for _, k := range sortedKeys(s.Environment) {
		if err := validateEnvKey(k); err != nil {
			errs = append(errs, err)
		}
	}
	if c := s.HTTPConcurrency; c < 0 || c > maxHTTPConcurrency {
		add("httpConcurrency must be 1 to %d, not %d", maxHTTPConcurrency, c)
	}
	switch s.Network {
	case "", nimbus.NetworkEgress, nimbus.NetworkNone, nimbus.NetworkHost:
	default:
		add("network must be egress, none or host, not %q", s.Network)
	}
	errs = append(errs, s.versionProblems()...)
	errs = append(errs, s.imageProblems()...)
	return append(errs, s.settingProblems()...)
}

// imageProblems checks the image settings: only with an image, a port
// only for an HTTP image.
func (s *functionSpec) imageProblems() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if s.Image == "" {
		if len(s.ImageCommand) > 0 || len(s.ImageEntrypoint) > 0 || s.ImageWorkdir != "" || s.ImagePort != 0 {
			add("imageCommand, imageEntrypoint, imageWorkdir and imagePort need an image")
		}
		return errs
	}
	if s.Handler != "" {
		add("an image has no handler: set imageCommand (the image's CMD) instead")
	}
	if s.Layers != nil && len(*s.Layers) > 0 {
		add("layers are for code, not images")
	}
	if w := s.ImageWorkdir; w != "" && !strings.HasPrefix(w, "/") {
		add("imageWorkdir %q must be an absolute path", w)
	}
	if p := s.ImagePort; p < 0 || p > 65535 {
		add("imagePort must be 1 to 65535, not %d", p)
	} else if p != 0 && s.Runtime != "http" {
		add("imagePort is for an image served over HTTP (runtime http)")
	}
	return errs
}

// Tracing modes, log formats and log levels as Lambda names them.
var (
	tracingModes         = []string{nimbus.TracingActive, nimbus.TracingPassThrough}
	logFormats           = []string{nimbus.LogFormatJSON, nimbus.LogFormatText}
	applicationLogLevels = []string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}
	systemLogLevels      = []string{"DEBUG", "INFO", "WARN"}
)

// settingProblems checks ephemeral storage, tracing and logging.
func (s *functionSpec) settingProblems() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if m := s.EphemeralMB; m != 0 && (m < nimbus.MinEphemeralMB || m > nimbus.MaxEphemeralMB) {
		add("ephemeralStorage must be %d to %d MB, not %d", nimbus.MinEphemeralMB, nimbus.MaxEphemeralMB, m)
	}
	if s.Tracing != "" && !slices.Contains(tracingModes, s.Tracing) {
		add("tracing must be Active or PassThrough, not %q", s.Tracing)
	}
	if s.LogFormat != "" && !slices.Contains(logFormats, s.LogFormat) {
		add("logging format must be JSON or Text, not %q", s.LogFormat)
	}
	if s.AppLogLevel != "" && !slices.Contains(applicationLogLevels, s.AppLogLevel) {
		add("logging applicationLogLevel must be one of %s, not %q", strings.Join(applicationLogLevels, ", "), s.AppLogLevel)
	}
	if s.SystemLogLevel != "" && !slices.Contains(systemLogLevels, s.SystemLogLevel) {
		add("logging systemLogLevel must be one of %s, not %q", strings.Join(systemLogLevels, ", "), s.SystemLogLevel)
	}
	if (s.AppLogLevel != "" || s.SystemLogLevel != "") && s.LogFormat != nimbus.LogFormatJSON {
		add("log levels need logging format JSON (Lambda filters by level only in JSON logs)")
	}
	return errs
}

// canonical returns v spelt as the first of choices it matches regardless
// of case, or v unchanged: flags and manifests take json, JSON or Json.
func canonical(v string, choices []string) string {
	for _, c := range choices {
		if strings.EqualFold(v, c) {
			return c
		}
	}
	return v
}

// validateName checks a function name as Lambda does.
func validateName(name string) error {
	if !registry.ValidName(name) {
		if name == "" {
			return errors.New("name is required")
		}
		return fmt.Errorf("name %q is invalid: use 1 to 64 letters, digits, hyphens and underscores", name)
	}
	return nil
}

func validateEnvKey(k string) error {
	if !registry.ValidEnvKey(k) {
		return fmt.Errorf("environment variable name %q is invalid: it must start with a letter and have at least two letters, digits or underscores", k)
	}
	return nil
}

// needsHandler: custom runtimes (provided*) and HTTP functions run their
// own executable; every other runtime needs a handler.
func needsHandler(runtime string) bool { return registry.NeedsHandler(runtime) }

// memory and timeout return the values deploy sends.
func (s *functionSpec) memory() int32 {
	if s.MemoryMB == 0 {
		return nimbus.DefaultMemoryMB
	}
	return int32(s.MemoryMB)
}

func (s *functionSpec) timeout() int32 {
	if s.Timeout == 0 {
		return nimbus.DefaultTimeout
	}
	return int32(s.Timeout)
}

// parseTimeout reads a timeout as whole seconds: "30", or a duration such as
// "30s" or "2m". It must be within Lambda's 1 to 900 seconds.
func parseTimeout(v string) (int, error) {
	v = strings.TrimSpace(v)
	if n, err := strconv.Atoi(v); err == nil {
		if n < nimbus.MinTimeout || n > nimbus.MaxTimeout {
			return 0, fmt.Errorf("timeout must be %ds to %ds (15m), not %ds", nimbus.MinTimeout, nimbus.MaxTimeout, n)
		}
		return n, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("invalid timeout %q: use seconds (30) or a duration (30s, 2m)", v)
	}
	if d%time.Second != 0 {
		return 0, fmt.Errorf("timeout %s is not a whole number of seconds", v)
	}
	if d < nimbus.MinTimeout*time.Second || d > nimbus.MaxTimeout*time.Second {
		return 0, fmt.Errorf("timeout must be %ds to %ds (15m), not %s", nimbus.MinTimeout, nimbus.MaxTimeout, v)
	}
	return int(d / time.Second), nil
}

// parseIdleTimeout reads an instance idle timeout: whole seconds from 1s to
// 24h, as a duration.
func parseIdleTimeout(v string) (int, error) {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil || d < time.Second || d > 24*time.Hour || d%time.Second != 0 {
		return 0, fmt.Errorf("idle-timeout must be whole seconds from 1s to 24h, not %q", v)
	}
	return int(d / time.Second), nil
}

// parseEnv reads KEY=VALUE pairs.
func parseEnv(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	env := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return nil, fmt.Errorf("invalid --env %q: want KEY=VALUE", p)
		}
		if err := validateEnvKey(k); err != nil {
			return nil, fmt.Errorf("invalid --env %q: %w", p, err)
		}
		if _, dup := env[k]; dup {
			return nil, fmt.Errorf("invalid --env: %s is given twice", k)
		}
		env[k] = v
	}
	return env, nil
}

// checkCode verifies that path is a directory or a .zip file.
func checkCode(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("code: %w", err)
	}
	switch {
	case st.IsDir():
		return nil
	case st.Mode().IsRegular() && strings.EqualFold(filepath.Ext(path), ".zip"):
		return nil
	}
	return fmt.Errorf("code %s must be a directory or a .zip file", path)
}

// zipMagic starts every zip archive that holds at least one entry; an empty
// archive starts with the end-of-directory record.
var zipMagic, emptyZipMagic = []byte("PK\x03\x04"), []byte("PK\x05\x06")

// packageCode returns the zip package of path: a directory zipped with
// codepkg.Zip, or a .zip file as it is.
func packageCode(path string) ([]byte, error) {
	if err := checkCode(path); err != nil {
		return nil, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("code: %w", err)
	}
	if !st.IsDir() {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("code: %w", err)
		}
		if !bytes.HasPrefix(b, zipMagic) && !bytes.HasPrefix(b, emptyZipMagic) {
			return nil, fmt.Errorf("code %s is not a zip archive", path)
		}
		return b, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("code: %w", err)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("code directory %s is empty", path)
	}
	var buf bytes.Buffer
	if _, err := codepkg.Zip(path, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
