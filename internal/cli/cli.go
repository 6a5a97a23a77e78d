// Package cli is the client side of the nimbus command: deploy, ls, get, rm,
// invoke, logs, runtimes, tasks, dlq, triggers, keys and audit. The commands talk to a
// Nimbus node over its HTTP API: Lambda's REST dialect through the AWS SDK's
// Lambda client, and Nimbus's own /nimbus/v1 endpoints (logs, runtimes,
// tasks, dead letters, triggers) through net/http.
//
// Every command writes to cmd.OutOrStdout() and cmd.ErrOrStderr(): results
// to the first, progress and function logs to the second.
package cli

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Defaults of the persistent flags.
const (
	// DefaultEndpoint is where `nimbus serve` listens by default.
	DefaultEndpoint = "http://127.0.0.1:9000"
	// EndpointEnv names the environment variable that overrides
	// DefaultEndpoint.
	EndpointEnv   = "NIMBUS_ENDPOINT"
	defaultRegion = "us-east-1"
)

// Output formats.
const (
	formatTable = "table"
	formatJSON  = "json"
	formatCSV   = "csv" // nimbus usage only (csvAnnotation)
)

// csvAnnotation marks the commands that offer -o csv.
const csvAnnotation = "csv"

// globals holds the persistent flags and the settings every command shares.
type globals struct {
	endpoint string
	output   outputFlag
	region   string
	creds    credFlags

	// waitTimeout bounds how long deploy waits for a function to be ready;
	// pollInterval is the longest pause between two polls; deploy says it
	// is waiting once it has waited announceAfter.
	waitTimeout   time.Duration
	pollInterval  time.Duration
	announceAfter time.Duration
}

// AddCommands adds the client commands (deploy, ls, get, rm, invoke, logs,
// runtimes, tasks, dlq, triggers) to root, and the persistent flags they share: --endpoint
// (default $NIMBUS_ENDPOINT, else DefaultEndpoint), -o/--output (table or
// json) and --region (default $AWS_REGION, else us-east-1).
func AddCommands(root *cobra.Command) {
	addCommands(root, &globals{waitTimeout: 60 * time.Second, pollInterval: time.Second, announceAfter: time.Second})
}

// addCommands is AddCommands with g's wait settings (tests shorten them).
// It also makes every flag's parse error (of root's own subcommands too,
// such as serve) one clear line: FlagError.
func addCommands(root *cobra.Command, g *globals) {
	root.SetFlagErrorFunc(FlagError)
	g.output = formatTable
	pf := root.PersistentFlags()
	pf.StringVar(&g.endpoint, "endpoint", envOr(EndpointEnv, DefaultEndpoint),
		"URL of the Nimbus API (env "+EndpointEnv+")")
	pf.VarP(&g.output, "output", "o", "output format: table or json (csv for usage)")
	pf.StringVar(&g.region, "region", envOr("AWS_REGION", defaultRegion),
		"region the client signs requests for (env AWS_REGION)")
	pf.StringVar(&g.creds.accessKeyID, "access-key-id", "", "access key to sign requests with (env "+AccessKeyEnv+", else AWS_ACCESS_KEY_ID, AWS_PROFILE, the local node's credentials file)")
	pf.StringVar(&g.creds.secretAccessKey, "secret-access-key", "", "secret of --access-key-id (env "+SecretKeyEnv+")")
	pf.StringVar(&g.creds.profile, "profile", "", "profile of the AWS shared credentials files to sign with (env AWS_PROFILE)")
	triggers := newTriggersCmd(g)
	triggers.AddCommand(newTriggersRotateKeyCmd(g)) // urlkey.go
	root.AddCommand(
		newDeployCmd(g),
		newLsCmd(g),
		newGetCmd(g),
		newRmCmd(g),
		newInvokeCmd(g),
		newLogsCmd(g),
		newRuntimesCmd(g),
		newNodesCmd(g), // nodes.go
		newTasksCmd(g),
		newDLQCmd(g),
		triggers,
		newKeysCmd(g),
		newAuditCmd(g),
		newInvocationsCmd(g),
		newUsageCmd(g),
		newConsoleCmd(g),
		newPublishCmd(g),
		newVersionsCmd(g),
		newAliasCmd(g),
	)
}

// FlagError rewrites a flag's parse error as one line that names the flag
// and says what it takes: `invalid --memory "abc": want a whole number`
// rather than pflag's text around strconv's. Other errors pass unchanged.
func FlagError(_ *cobra.Command, err error) error {
	var ive *pflag.InvalidValueError
	if !errors.As(err, &ive) {
		return err
	}
	f := ive.GetFlag()
	want := ive.Unwrap().Error()
	var ne *strconv.NumError
	switch typ := f.Value.Type(); {
	case errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange):
		want = "the number is out of range"
	case strings.HasPrefix(typ, "int"):
		want = "want a whole number"
	case strings.HasPrefix(typ, "uint"):
		want = "want a whole number, 0 or more"
	case strings.HasPrefix(typ, "float"):
		want = "want a number"
	case typ == "duration":
		want = "want a duration such as 30s, 5m or 1h"
	case typ == "bool":
		want = "want true or false"
	}
	return fmt.Errorf("invalid --%s %q: %s", f.Name, ive.GetValue(), want)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// outputFlag is the -o flag; Set refuses formats other than table and json.
type outputFlag string

func (o *outputFlag) String() string { return string(*o) }
func (o *outputFlag) Type() string   { return "format" }

func (o *outputFlag) Set(v string) error {
	switch v {
	case formatTable, formatJSON, formatCSV:
		*o = outputFlag(v)
		return nil
	}
	return fmt.Errorf("must be table, json or csv, not %q", v)
}

func (g *globals) json() bool { return g.output == formatJSON }

// run builds the API client for a command's RunE, and turns "connection
// refused" into a hint to start the server.
func (g *globals) run(fn func(cmd *cobra.Command, c *client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		endpoint, err := checkEndpoint(g.endpoint)
		if err != nil {
			return err
		}
		if g.output == formatCSV && cmd.Annotations[csvAnnotation] == "" {
			return fmt.Errorf("-o csv is offered by nimbus usage only; use table or json for nimbus %s", cmd.Name())
		}
		if g.region == "" {
			return errors.New("--region must not be empty")
		}
		creds, source, err := g.creds.credentials(cmd.Context())
		if err != nil {
			return err
		}
		c := newClient(endpoint, g.region, creds)
		defer c.close()
		err = fn(cmd, c, args)
		if isConnRefused(err) {
			return &unreachableError{endpoint: endpoint, err: err}
		}
		return withCredentialHint(err, creds, source)
	}
}

// checkEndpoint validates --endpoint and returns it without a trailing slash.
func checkEndpoint(v string) (string, error) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("invalid --endpoint %q: want an http or https URL such as %s", v, DefaultEndpoint)
	}
	return strings.TrimRight(v, "/"), nil
}
