package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// manifest is the file `nimbus deploy -f` reads (docs/manifest.md).
type manifest struct {
	Functions []manifestFunction `yaml:"functions"`
}

type manifestFunction struct {
	Name            string            `yaml:"name"`
	Runtime         string            `yaml:"runtime"`
	Handler         string            `yaml:"handler"`
	Code            string            `yaml:"code"`
	Memory          int               `yaml:"memory"`
	Timeout         manifestTimeout   `yaml:"timeout"`
	Description     string            `yaml:"description"`
	Environment     map[string]string `yaml:"environment"`
	HTTPConcurrency int               `yaml:"httpConcurrency"`
	IdleTimeout     manifestIdle      `yaml:"idleTimeout"`
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
	return functionSpec{
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
	}
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
	unknownFieldRE = regexp.MustCompile(`field (.*) not found in type \S+`)
	typeNames      = strings.NewReplacer(
		"[]cli.manifestFunction", "a list of functions",
		"cli.manifestFunction", "a function (a mapping of name, runtime, ...)",
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
		e = unknownFieldRE.ReplaceAllString(e, `unknown field "$1"`)
		errs = append(errs, errors.New(typeNames.Replace(e)))
	}
	return errors.Join(errs...)
}
