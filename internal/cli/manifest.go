package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/lazyre"
	"github.com/nimbus-serverless/nimbus/internal/registry"
)

// manifest is the file `nimbus deploy -f` reads (docs/manifest.md).
type manifest struct {
	Functions []manifestFunction `yaml:"functions"`
}

type manifestFunction struct {
	Name    string `yaml:"name"`
	Runtime string `yaml:"runtime"`
	Handler string `yaml:"handler"`
	Code    string `yaml:"code"`
	// Image is a container image run instead of code; the other image
	// fields are its ImageConfig and, for runtime http, its port.
	Image           string            `yaml:"image"`
	ImageCommand    []string          `yaml:"imageCommand"`
	ImageEntrypoint []string          `yaml:"imageEntrypoint"`
	ImageWorkdir    string            `yaml:"imageWorkdir"`
	ImagePort       int               `yaml:"imagePort"`
	Memory          int               `yaml:"memory"`
	Timeout         manifestTimeout   `yaml:"timeout"`
	Description     string            `yaml:"description"`
	Environment     map[string]string `yaml:"environment"`
	HTTPConcurrency int               `yaml:"httpConcurrency"`
	IdleTimeout     manifestIdle      `yaml:"idleTimeout"`
	// Network is the network of the function's instances: egress, none
	// or host.
	Network string `yaml:"network"`
	// EphemeralStorage is the size of an instance's /tmp in MB.
	EphemeralStorage int              `yaml:"ephemeralStorage"`
	Tracing          string           `yaml:"tracing"`
	Logging          *manifestLogging `yaml:"logging"`
	// DeadLetter receives the events of asynchronous invocations that
	// failed for good.
	DeadLetter string `yaml:"deadLetter"`
	// Triggers, when present, are all the function's triggers: deploy
	// creates, updates and deletes triggers to match (triggers.go).
	Triggers *[]manifestTrigger `yaml:"triggers"`
	// Layers, when present, are the function's layer version ARNs, in
	// order; absent leaves them as they are.
	Layers *[]string `yaml:"layers"`
	// Publish publishes a version after the deploy; Aliases point at
	// versions (manifest_versions.go).
	Publish bool                 `yaml:"publish"`
	Aliases map[string]aliasSpec `yaml:"aliases"`
}

// manifestLogging is Lambda's LoggingConfig.
type manifestLogging struct {
	Format              string `yaml:"format"`
	ApplicationLogLevel string `yaml:"applicationLogLevel"`
	SystemLogLevel      string `yaml:"systemLogLevel"`
}

// manifestIdle is an instance idle timeout, written as a duration ("10m").
type manifestIdle int

// UnmarshalYAML implements yaml.Unmarshaler.
func (t *manifestIdle) UnmarshalYAML(n *yaml.Node) error {
	s, err := parseIdleTimeout(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return typeErrorf("line %d: idleTimeout must be a whole-second duration from 1s to 24h (e.g. 10m)", n.Line)
	}
	*t = manifestIdle(s)
	return nil
}

// manifestTimeout is a timeout in seconds, written as 30, "30s" or "2m".
type manifestTimeout int

// UnmarshalYAML implements yaml.Unmarshaler.
func (t *manifestTimeout) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeErrorf("line %d: timeout must be seconds (30) or a duration (30s, 2m)", n.Line)
	}
	v, err := parseTimeout(n.Value)
	if err != nil {
		return typeErrorf("line %d: %v", n.Line, err)
	}
	*t = manifestTimeout(v)
	return nil
}

// typeErrorf returns a *yaml.TypeError, which the decoder collects with the
// other field errors instead of stopping at it.
func typeErrorf(format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf(format, args...)}}
}

// parseManifest parses and validates a manifest. Relative code paths are
// resolved against dir, the manifest's directory. It checks every entry
// (names, duplicates, required fields, ranges) and reports all problems
// with their line numbers; it does not look at the code paths (checkCode
// does).
func parseManifest(data []byte, dir string) ([]functionSpec, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var m manifest
	if err := dec.Decode(&m); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the manifest is empty: list functions under functions:")
		}
		return nil, yamlError(err)
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, yamlError(err)
		}
		return nil, fmt.Errorf("line %d: a manifest is one YAML document, this is a second", next.Line)
	}
	if len(m.Functions) == 0 {
		return nil, errors.New("the manifest lists no functions: list them under functions:")
	}
	lines := entryLines(data)
	tlines := triggerLines(data, len(m.Functions))
	specs := make([]functionSpec, 0, len(m.Functions))
	seen := make(map[string]int)
	var errs []error
	for i, f := range m.Functions {
		where := fmt.Sprintf("functions[%d]", i)
		if i < len(lines) {
			where = fmt.Sprintf("line %d: %s", lines[i], where)
		}
		if f.Name != "" {
			where += fmt.Sprintf(" (%q)", f.Name)
		}
		s := f.spec(dir)
		for _, err := range s.problems() {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
		errs = append(errs, f.triggerProblems(where, tlines[i])...)
		if first, dup := seen[f.Name]; dup && f.Name != "" {
			errs = append(errs, fmt.Errorf("%s: name %q is taken by functions[%d]", where, f.Name, first))
		} else {
			seen[f.Name] = i
		}
		specs = append(specs, s)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return specs, nil
}

func (f *manifestFunction) spec(dir string) functionSpec {
	code := f.Code
	if code != "" && !filepath.IsAbs(code) {
		code = filepath.Join(dir, code)
	}
	s := functionSpec{
		Name:            f.Name,
		Runtime:         f.Runtime,
		Handler:         f.Handler,
		Code:            code,
		Description:     f.Description,
		MemoryMB:        f.Memory,
		Timeout:         int(f.Timeout),
		Environment:     f.Environment,
		HTTPConcurrency: f.HTTPConcurrency,
		IdleTimeout:     int(f.IdleTimeout),
		Network:         f.Network,
		Triggers:        f.triggerSpecs(),
		EphemeralMB:     f.EphemeralStorage,
		Tracing:         canonical(f.Tracing, tracingModes),
		DeadLetter:      f.DeadLetter,
		Layers:          f.Layers,
		Publish:         f.Publish,
		Aliases:         f.Aliases,
		Image:           f.Image,
		ImageCommand:    f.ImageCommand,
		ImageEntrypoint: f.ImageEntrypoint,
		ImageWorkdir:    f.ImageWorkdir,
		ImagePort:       f.ImagePort,
	}
	if l := f.Logging; l != nil {
		s.LogFormat = canonical(l.Format, logFormats)
		s.AppLogLevel, s.SystemLogLevel = strings.ToUpper(l.ApplicationLogLevel), strings.ToUpper(l.SystemLogLevel)
	}
	return s
}

// entryLines returns the line of each entry of the functions list.
func entryLines(data []byte) []int {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil || len(root.Content) == 0 {
		return nil
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return nil
	}
	var lines []int
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if k, v := doc.Content[i], doc.Content[i+1]; k.Value == "functions" && v.Kind == yaml.SequenceNode {
			for _, item := range v.Content {
				lines = append(lines, item.Line)
			}
		}
	}
	return lines
}

var (
	unknownFieldRE = lazyre.New(`field (.*) not found in type \S+`)
	typeNames      = strings.NewReplacer(
		"[]cli.manifestFunction", "a list of functions",
		"cli.manifestFunction", "a function (a mapping of name, runtime, ...)",
		"[]cli.manifestTrigger", "a list of triggers",
		"cli.manifestTrigger", "a trigger (a mapping of name, type, config, ...)",
		"cli.manifestLogging", "logging settings (a mapping of format, applicationLogLevel, systemLogLevel)",
		"cli.manifest", "a manifest (a mapping with a functions list)",
	)
)

// yamlError rewrites yaml.v3's errors for people: one "line N: ..." per
// problem, no Go type names.
func yamlError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	errs := make([]error, 0, len(te.Errors))
	for _, e := range te.Errors {
		e = unknownFieldRE().ReplaceAllString(e, `unknown field "$1"`)
		errs = append(errs, errors.New(typeNames.Replace(e)))
	}
	return errors.Join(errs...)
}

// manifestTrigger is one entry of a function's triggers list
// (docs/manifest.md, docs/triggers.md).
type manifestTrigger struct {
	Name               string         `yaml:"name"`
	Type               string         `yaml:"type"`
	Enabled            *bool          `yaml:"enabled"`
	Config             yaml.Node      `yaml:"config"`
	BatchSize          int            `yaml:"batchSize"`
	BatchWindow        manifestWindow `yaml:"batchWindow"`
	MaxRetries         *int           `yaml:"maxRetries"`
	FailureDestination string         `yaml:"failureDestination"`
	Concurrency        int            `yaml:"concurrency"`
}

// manifestWindow is a batching window, written as a duration ("500ms").
type manifestWindow time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (w *manifestWindow) UnmarshalYAML(n *yaml.Node) error {
	d, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil || d < 0 || d > nimbus.MaxTriggerBatchWindow {
		return typeErrorf("line %d: batchWindow must be a duration from 0s to 5m (e.g. 500ms)", n.Line)
	}
	*w = manifestWindow(d)
	return nil
}

// triggerProblems checks f's triggers; lines are their entries' lines.
func (f *manifestFunction) triggerProblems(where string, lines []int) []error {
	if f.Triggers == nil {
		return nil
	}
	var errs []error
	seen := make(map[string]int)
	fnWhere := where // without its "line N: ", which the trigger's replaces
	if _, rest, ok := strings.Cut(where, ": "); ok && strings.HasPrefix(where, "line ") {
		fnWhere = rest
	}
	for j, t := range *f.Triggers {
		at := fmt.Sprintf("%s: triggers[%d]", fnWhere, j)
		if j < len(lines) {
			at = fmt.Sprintf("line %d: %s", lines[j], at)
		}
		if t.Name != "" {
			at += fmt.Sprintf(" (%q)", t.Name)
		}
		for _, err := range t.problems() {
			errs = append(errs, fmt.Errorf("%s: %w", at, err))
		}
		if first, dup := seen[t.Name]; dup && t.Name != "" {
			errs = append(errs, fmt.Errorf("%s: name %q is taken by triggers[%d]", at, t.Name, first))
		} else {
			seen[t.Name] = j
		}
	}
	return errs
}

// problems checks what can be checked without the node (which validates
// the type and its config).
func (t *manifestTrigger) problems() []error {
	var errs []error
	switch {
	case t.Name == "":
		errs = append(errs, errors.New("name is required"))
	case !registry.ValidName(t.Name):
		errs = append(errs, fmt.Errorf("name %q is invalid: use 1 to 64 letters, digits, hyphens and underscores", t.Name))
	}
	if t.Type == "" {
		errs = append(errs, errors.New("type is required: kafka, rabbitmq, nats, mqtt, redis, timer, s3 or http"))
	}
	if t.BatchSize != 0 && (t.BatchSize < 1 || t.BatchSize > nimbus.MaxTriggerBatchSize) {
		errs = append(errs, fmt.Errorf("batchSize must be 1 to %d, not %d", nimbus.MaxTriggerBatchSize, t.BatchSize))
	}
	if r := t.MaxRetries; r != nil && (*r < 0 || *r > nimbus.MaxTriggerRetries) {
		errs = append(errs, fmt.Errorf("maxRetries must be 0 to %d, not %d", nimbus.MaxTriggerRetries, *r))
	}
	if t.Concurrency < 0 || t.Concurrency > nimbus.MaxTriggerConcurrency {
		errs = append(errs, fmt.Errorf("concurrency must be 0 to %d, not %d", nimbus.MaxTriggerConcurrency, t.Concurrency))
	}
	if _, err := t.configJSON(); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// configJSON returns the config mapping as JSON (nil when absent).
func (t *manifestTrigger) configJSON() (json.RawMessage, error) {
	n := &t.Config
	if n.Kind == 0 || n.Tag == "!!null" {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config must be a mapping of the type's settings (docs/triggers.md)")
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return nil, fmt.Errorf("config: %v", err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("config cannot be JSON: %v (keys must be strings)", err)
	}
	return b, nil
}

// triggerSpecs returns the function's triggers for deploy; nil when the
// entry has no triggers key (deploy then leaves its triggers alone). The
// manifest must have passed parseManifest.
func (f *manifestFunction) triggerSpecs() *[]triggerSpec {
	if f.Triggers == nil {
		return nil
	}
	specs := make([]triggerSpec, 0, len(*f.Triggers))
	for _, t := range *f.Triggers {
		cfg, _ := t.configJSON()
		s := triggerSpec{Name: t.Name, Type: t.Type, Enabled: true, Config: cfg, BatchSize: max(t.BatchSize, 1),
			BatchWindow: time.Duration(t.BatchWindow), MaxRetries: nimbus.DefaultTriggerRetries,
			FailureDestination: t.FailureDestination, Concurrency: t.Concurrency}
		if t.Enabled != nil {
			s.Enabled = *t.Enabled
		}
		if t.MaxRetries != nil {
			s.MaxRetries = *t.MaxRetries
		}
		specs = append(specs, s)
	}
	return &specs
}

// triggerLines returns, per function entry, the lines of its trigger
// entries.
func triggerLines(data []byte, n int) [][]int {
	out := make([][]int, n)
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil || len(root.Content) == 0 {
		return out
	}
	fns := mappingValue(root.Content[0], "functions")
	if fns == nil || fns.Kind != yaml.SequenceNode {
		return out
	}
	for i, item := range fns.Content {
		ts := mappingValue(item, "triggers")
		if i >= n || ts == nil || ts.Kind != yaml.SequenceNode {
			continue
		}
		for _, t := range ts.Content {
			out[i] = append(out[i], t.Line)
		}
	}
	return out
}

// mappingValue returns the value of key in a mapping node, or nil.
func mappingValue(m *yaml.Node, key string) *yaml.Node {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}
