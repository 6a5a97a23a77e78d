package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/registry"
)

// triggerView is a trigger as /nimbus/v1/functions/{name}/triggers shows it.
type triggerView struct {
	ID                 string          `json:"id"`
	Name               string          `json:"name"`
	Type               string          `json:"type"`
	Enabled            bool            `json:"enabled"`
	Config             json.RawMessage `json:"config,omitempty"`
	BatchSize          int             `json:"batchSize"`
	BatchWindow        string          `json:"batchWindow"`
	MaxRetries         int             `json:"maxRetries"`
	FailureDestination string          `json:"failureDestination,omitempty"`
	Concurrency        int             `json:"concurrency,omitempty"`
	Created            time.Time       `json:"created"`
	LastModified       time.Time       `json:"lastModified"`
	Status             triggerStatus   `json:"status"`
}

// triggerStatus is a trigger's live status on the node that answered.
type triggerStatus struct {
	State     string    `json:"state"`
	Reason    string    `json:"reason,omitempty"`
	Lag       *int64    `json:"lag,omitempty"`
	LastEvent time.Time `json:"lastEvent,omitzero"`
	Delivered int64     `json:"delivered"`
	Failed    int64     `json:"failed"`
	// LastError is why the last failed attempt failed, at LastErrorTime.
	LastError     string    `json:"lastError,omitempty"`
	LastErrorTime time.Time `json:"lastErrorTime,omitzero"`
}

// triggerBody is what create and update send: nil fields are left out
// (update: unchanged; create: the node's defaults).
type triggerBody struct {
	Name               *string         `json:"name,omitempty"`
	Type               *string         `json:"type,omitempty"`
	Enabled            *bool           `json:"enabled,omitempty"`
	Config             json.RawMessage `json:"config,omitempty"`
	BatchSize          *int            `json:"batchSize,omitempty"`
	BatchWindow        *string         `json:"batchWindow,omitempty"`
	MaxRetries         *int            `json:"maxRetries,omitempty"`
	FailureDestination *string         `json:"failureDestination,omitempty"`
	Concurrency        *int            `json:"concurrency,omitempty"`
}

func triggersPath(function string, rest ...string) string {
	p := "/nimbus/v1/functions/" + url.PathEscape(function) + "/triggers"
	for _, r := range rest {
		p += "/" + url.PathEscape(r)
	}
	return p
}

// send sends a signed request with a JSON body (nil: none) to one of
// Nimbus's own endpoints and decodes a JSON answer into out (nil: ignored).
// A response other than 2xx becomes an *apiError.
func (c *client) send(ctx context.Context, method, path string, body, out any) error {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
	}
	return c.do(ctx, method, path, payload, out)
}

func (c *client) listTriggers(ctx context.Context, function string) ([]triggerView, error) {
	var out struct {
		Triggers []triggerView `json:"triggers"`
	}
	if err := c.send(ctx, http.MethodGet, triggersPath(function), nil, &out); err != nil {
		return nil, err
	}
	if out.Triggers == nil {
		out.Triggers = []triggerView{}
	}
	return out.Triggers, nil
}

func newTriggersCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "triggers",
		Aliases: []string{"trigger"},
		Short:   "Manage the triggers that connect event sources to functions",
		Long: `A trigger connects an event source to a function: a message broker (kafka,
rabbitmq, nats, mqtt, redis), a timer, an object store (s3) or an HTTP URL.
Each type has its own --config (docs/triggers.md); batching, retries and the
failure destination work the same for every message source.`,
	}
	cmd.AddCommand(
		newTriggersLsCmd(g),
		newTriggersGetCmd(g),
		newTriggersCreateCmd(g),
		newTriggersUpdateCmd(g),
		newTriggersRmCmd(g),
		newTriggersEnableCmd(g, true),
		newTriggersEnableCmd(g, false),
	)
	return cmd
}

func newTriggersLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "ls FUNCTION",
		Aliases: []string{"list"},
		Short:   "List a function's triggers with their state",
		Args:    cobra.ExactArgs(1),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			ts, err := c.listTriggers(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			switch {
			case g.json():
				return writeJSON(cmd.OutOrStdout(), ts)
			case len(ts) == 0:
				_, err := fmt.Fprintf(cmd.ErrOrStderr(), "Function %s has no triggers.\n", args[0])
				return err
			}
			return writeTriggerTable(cmd.OutOrStdout(), ts)
		}),
	}
}

func newTriggersGetCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "get FUNCTION TRIGGER",
		Short: "Show a trigger, its configuration and its state",
		Args:  cobra.ExactArgs(2),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			var t triggerView
			if err := c.send(cmd.Context(), http.MethodGet, triggersPath(args[0], args[1]), nil, &t); err != nil {
				return err
			}
			return g.printTrigger(cmd, t)
		}),
	}
}

func (g *globals) printTrigger(cmd *cobra.Command, t triggerView) error {
	if g.json() {
		return writeJSON(cmd.OutOrStdout(), t)
	}
	return writeTriggerDetail(cmd.OutOrStdout(), t)
}

// triggerFlags are the settings create and update share.
type triggerFlags struct {
	typ, config, window, dest string
	batch, retries, conc      int
	disabled                  bool
}

func (f *triggerFlags) register(cmd *cobra.Command, create bool) {
	fl := cmd.Flags()
	if create {
		fl.StringVar(&f.typ, "type", "", "trigger type: kafka, rabbitmq, nats, mqtt, redis, timer, s3 or http")
		fl.BoolVar(&f.disabled, "disabled", false, "create the trigger disabled")
	}
	fl.StringVar(&f.config, "config", "", "the type's configuration as JSON, or @FILE to read it from a file")
	fl.IntVar(&f.batch, "batch-size", 0, "most messages per invocation, 1 to 10000 (default 1)")
	fl.StringVar(&f.window, "batch-window", "", "how long to gather a batch, up to 5m (default 0s: at once)")
	fl.IntVar(&f.retries, "max-retries", 0, "retries of a failed message before the failure destination, 0 to 100 (default 3)")
	fl.StringVar(&f.dest, "failure-destination", "", "where messages that keep failing go: a function, a webhook URL or nats:SUBJECT")
	fl.IntVar(&f.conc, "concurrency", 0, "most batches in flight at once on a node (default: the node's)")
}

// triggerSettingFlags are the flags update takes.
var triggerSettingFlags = []string{"config", "batch-size", "batch-window", "max-retries", "failure-destination", "concurrency"}

// body builds the request from the flags the user set.
func (f *triggerFlags) body(cmd *cobra.Command) (*triggerBody, error) {
	b := &triggerBody{}
	set := cmd.Flags().Changed
	if set("type") {
		b.Type = &f.typ
	}
	if set("config") {
		raw, err := readConfigFlag(f.config)
		if err != nil {
			return nil, err
		}
		b.Config = raw
	}
	if set("batch-size") {
		if f.batch < 1 || f.batch > nimbus.MaxTriggerBatchSize {
			return nil, fmt.Errorf("--batch-size must be 1 to %d, not %d", nimbus.MaxTriggerBatchSize, f.batch)
		}
		b.BatchSize = &f.batch
	}
	if set("batch-window") {
		d, err := time.ParseDuration(f.window)
		if err != nil || d < 0 || d > nimbus.MaxTriggerBatchWindow {
			return nil, fmt.Errorf("--batch-window must be a duration from 0s to 5m (e.g. 500ms), not %q", f.window)
		}
		w := d.String()
		b.BatchWindow = &w
	}
	if set("max-retries") {
		if f.retries < 0 || f.retries > nimbus.MaxTriggerRetries {
			return nil, fmt.Errorf("--max-retries must be 0 to %d, not %d", nimbus.MaxTriggerRetries, f.retries)
		}
		b.MaxRetries = &f.retries
	}
	if set("failure-destination") {
		b.FailureDestination = &f.dest
	}
	if set("concurrency") {
		if f.conc < 0 || f.conc > nimbus.MaxTriggerConcurrency {
			return nil, fmt.Errorf("--concurrency must be 0 to %d, not %d", nimbus.MaxTriggerConcurrency, f.conc)
		}
		b.Concurrency = &f.conc
	}
	if set("disabled") {
		enabled := !f.disabled
		b.Enabled = &enabled
	}
	return b, nil
}

// readConfigFlag reads --config: JSON, or @FILE.
func readConfigFlag(v string) (json.RawMessage, error) {
	data := []byte(v)
	if name, ok := strings.CutPrefix(v, "@"); ok {
		var err error
		if data, err = os.ReadFile(name); err != nil {
			return nil, fmt.Errorf("--config: %w", err)
		}
	}
	var probe any
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("--config is not valid JSON: %v", err)
	}
	if _, ok := probe.(map[string]any); !ok {
		return nil, errors.New("--config must be a JSON object, such as '{\"topic\": \"orders\"}'")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err != nil {
		return nil, fmt.Errorf("--config is not valid JSON: %v", err)
	}
	return buf.Bytes(), nil
}

// checkTriggerArgs validates FUNCTION TRIGGER before asking the node.
func checkTriggerArgs(args []string) error {
	if len(args) > 1 && !registry.ValidName(args[1]) {
		return fmt.Errorf("invalid trigger name %q: use 1 to 64 letters, digits, hyphens and underscores", args[1])
	}
	return nil
}

func newTriggersCreateCmd(g *globals) *cobra.Command {
	var f triggerFlags
	cmd := &cobra.Command{
		Use:   "create FUNCTION TRIGGER --type TYPE [--config JSON|@FILE] [flags]",
		Short: "Create a trigger",
		Example: `  nimbus triggers create worker orders --type kafka \
      --config '{"brokers": ["127.0.0.1:9092"], "topic": "orders"}' \
      --batch-size 100 --batch-window 500ms --failure-destination nats:orders.failed
  nimbus triggers create worker nightly --type timer --config @nightly.json`,
		Args: cobra.ExactArgs(2),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			if err := checkTriggerArgs(args); err != nil {
				return err
			}
			if !cmd.Flags().Changed("type") {
				return errors.New("--type is required: kafka, rabbitmq, nats, mqtt, redis, timer, s3 or http")
			}
			b, err := f.body(cmd)
			if err != nil {
				return err
			}
			b.Name = &args[1]
			var t triggerView
			if err := c.send(cmd.Context(), http.MethodPost, triggersPath(args[0]), b, &t); err != nil {
				return err
			}
			return g.printTrigger(cmd, t)
		}),
	}
	f.register(cmd, true)
	return cmd
}

func newTriggersUpdateCmd(g *globals) *cobra.Command {
	var f triggerFlags
	cmd := &cobra.Command{
		Use:   "update FUNCTION TRIGGER [flags]",
		Short: "Change a trigger's settings (the flags given; the others stay)",
		Example: `  nimbus triggers update worker orders --batch-size 500 --batch-window 1s
  nimbus triggers update worker orders --failure-destination ""`,
		Args: cobra.ExactArgs(2),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			if err := checkTriggerArgs(args); err != nil {
				return err
			}
			if !slices.ContainsFunc(triggerSettingFlags, cmd.Flags().Changed) {
				return errors.New("nothing to update: give at least one of --config, --batch-size, --batch-window, --max-retries, --failure-destination, --concurrency")
			}
			b, err := f.body(cmd)
			if err != nil {
				return err
			}
			var t triggerView
			if err := c.send(cmd.Context(), http.MethodPut, triggersPath(args[0], args[1]), b, &t); err != nil {
				return err
			}
			return g.printTrigger(cmd, t)
		}),
	}
	f.register(cmd, false)
	return cmd
}

func newTriggersRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "rm FUNCTION TRIGGER...",
		Aliases: []string{"delete"},
		Short:   "Delete triggers",
		Args:    cobra.MinimumNArgs(2),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			for _, name := range args[1:] {
				if err := c.send(cmd.Context(), http.MethodDelete, triggersPath(args[0], name), nil, nil); err != nil {
					return fmt.Errorf("delete %s: %w", name, err)
				}
				if !g.json() {
					fmt.Fprintf(cmd.OutOrStdout(), "Deleted trigger %s of function %s.\n", name, args[0])
				}
			}
			return nil
		}),
	}
}

func newTriggersEnableCmd(g *globals, enable bool) *cobra.Command {
	verb, short := "disable", "Stop a trigger (its settings are kept)"
	if enable {
		verb, short = "enable", "Start a disabled trigger again"
	}
	return &cobra.Command{
		Use:   verb + " FUNCTION TRIGGER",
		Short: short,
		Args:  cobra.ExactArgs(2),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			if err := checkTriggerArgs(args); err != nil {
				return err
			}
			var t triggerView
			if err := c.send(cmd.Context(), http.MethodPost, triggersPath(args[0], args[1], verb), nil, &t); err != nil {
				return err
			}
			return g.printTrigger(cmd, t)
		}),
	}
}

// reasonWidth is the most of a state's reason the table shows; get and
// -o json show it whole.
const reasonWidth = 60

// writeTriggerTable writes one row per trigger, with the reason of its
// state (why it is in Error) cut to one line of reasonWidth.
func writeTriggerTable(w io.Writer, ts []triggerView) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTYPE\tSTATE\tDELIVERED\tFAILED\tLAG\tLAST-EVENT\tREASON")
	for _, t := range ts {
		s := t.Status
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", t.Name, t.Type, dash(s.State), s.Delivered, s.Failed,
			lag(s.Lag), eventTime(s.LastEvent), dash(truncateText(s.Reason, reasonWidth)))
	}
	return tw.Flush()
}

// writeTriggerDetail writes one trigger as "Field: value" lines.
func writeTriggerDetail(w io.Writer, t triggerView) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	s := t.Status
	row("Name", t.Name)
	row("Type", t.Type)
	row("ID", dash(t.ID))
	row("Enabled", strconv.FormatBool(t.Enabled))
	row("State", dash(s.State))
	if s.Reason != "" {
		row("Reason", oneLineText(s.Reason))
	}
	row("Config", dash(string(t.Config)))
	row("Batch", fmt.Sprintf("%d messages, window %s", t.BatchSize, dash(t.BatchWindow)))
	row("Max retries", strconv.Itoa(t.MaxRetries))
	row("Failure destination", dash(t.FailureDestination))
	if t.Concurrency > 0 {
		row("Concurrency", strconv.Itoa(t.Concurrency))
	}
	row("Delivered", strconv.FormatInt(s.Delivered, 10))
	row("Failed", strconv.FormatInt(s.Failed, 10))
	row("Lag", lag(s.Lag))
	row("Last event", eventTime(s.LastEvent))
	if s.LastError != "" {
		row("Last error", eventTime(s.LastErrorTime)+" "+oneLineText(s.LastError))
	}
	row("Last modified", eventTime(t.LastModified))
	return tw.Flush()
}

func lag(l *int64) string {
	if l == nil {
		return "-"
	}
	return strconv.FormatInt(*l, 10)
}

func eventTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// triggerSpec is one trigger as a manifest declares it, every field with
// its effective value: deploy is declarative, so an update resets what the
// entry leaves out.
type triggerSpec struct {
	Name               string
	Type               string
	Enabled            bool
	Config             json.RawMessage
	BatchSize          int
	BatchWindow        time.Duration
	MaxRetries         int
	FailureDestination string
	Concurrency        int
}

// body is the create or update request that sets every field.
func (s *triggerSpec) body() *triggerBody {
	w := s.BatchWindow.String()
	cfg := s.Config
	if cfg == nil {
		cfg = json.RawMessage(`{}`)
	}
	return &triggerBody{Name: &s.Name, Type: &s.Type, Enabled: &s.Enabled, Config: cfg, BatchSize: &s.BatchSize,
		BatchWindow: &w, MaxRetries: &s.MaxRetries, FailureDestination: &s.FailureDestination, Concurrency: &s.Concurrency}
}

// matches reports whether the node's trigger is already as s describes.
func (s *triggerSpec) matches(v triggerView) bool {
	w, err := time.ParseDuration(v.BatchWindow)
	return err == nil && v.Type == s.Type && v.Enabled == s.Enabled && sameJSON(v.Config, s.Config) &&
		v.BatchSize == s.BatchSize && w == s.BatchWindow && v.MaxRetries == s.MaxRetries &&
		v.FailureDestination == s.FailureDestination && v.Concurrency == s.Concurrency
}

// sameJSON compares two JSON values (absent counts as {}).
func sameJSON(a, b json.RawMessage) bool {
	var va, vb any
	if len(a) == 0 {
		a = json.RawMessage(`{}`)
	}
	if len(b) == 0 {
		b = json.RawMessage(`{}`)
	}
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return bytes.Equal(ja, jb)
}

// syncTriggers makes the function's triggers match want: it deletes the
// triggers want lacks (and those whose type changed), creates the new ones
// and updates those that differ. A nil want leaves the triggers alone.
// progress, when not nil, gets a line per change.
func syncTriggers(ctx context.Context, c *client, function string, want *[]triggerSpec, progress io.Writer) error {
	if want == nil {
		return nil
	}
	have, err := c.listTriggers(ctx, function)
	if err != nil {
		return err
	}
	wanted := make(map[string]*triggerSpec, len(*want))
	for i := range *want {
		wanted[(*want)[i].Name] = &(*want)[i]
	}
	current := make(map[string]triggerView, len(have))
	report := func(verb, name string) {
		if progress != nil {
			fmt.Fprintf(progress, "%s trigger %s of function %s.\n", verb, name, function)
		}
	}
	// Deletes first: they free names, and the one HTTP trigger a function
	// may have.
	for _, h := range have {
		if s := wanted[h.Name]; s != nil && s.Type == h.Type {
			current[h.Name] = h
			continue
		}
		if err := c.send(ctx, http.MethodDelete, triggersPath(function, h.Name), nil, nil); err != nil {
			return fmt.Errorf("delete trigger %s: %w", h.Name, err)
		}
		report("Deleted", h.Name)
	}
	for _, s := range *want {
		h, exists := current[s.Name]
		switch {
		case !exists:
			if err := c.send(ctx, http.MethodPost, triggersPath(function), s.body(), nil); err != nil {
				return fmt.Errorf("create trigger %s: %w", s.Name, err)
			}
			report("Created", s.Name)
		case !s.matches(h):
			if err := c.send(ctx, http.MethodPut, triggersPath(function, s.Name), s.body(), nil); err != nil {
				return fmt.Errorf("update trigger %s: %w", s.Name, err)
			}
			report("Updated", s.Name)
		}
	}
	return nil
}
