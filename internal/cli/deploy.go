package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
	"github.com/spf13/cobra"

	"github.com/nimbus-serverless/nimbus"
)

// deployFlags are deploy's flags.
type deployFlags struct {
	file            string
	runtime         string
	handler         string
	code            string
	image           string
	imageCommand    []string
	imageEntrypoint []string
	imageWorkdir    string
	imagePort       int
	description     string
	timeout         string
	memory          int
	env             []string
	httpConcurrency int
	idleTimeout     string
	network         string
	ephemeralMB     int
	tracing         string
	logFormat       string
	logLevel        string
	systemLogLevel  string
	deadLetter      string
}

// functionFlags are the flags that describe one function, which a manifest
// replaces.
var functionFlags = []string{"runtime", "handler", "code", "memory", "timeout", "env", "description", "http-concurrency", "idle-timeout",
	"ephemeral-storage", "tracing", "log-format", "log-level", "system-log-level", "dead-letter",
	"image", "image-command", "image-entrypoint", "image-workdir", "image-port"}

func newDeployCmd(g *globals) *cobra.Command {
	var f deployFlags
	cmd := &cobra.Command{
		Use:   "deploy NAME --runtime RUNTIME --handler HANDLER --code DIR|ZIP | deploy -f MANIFEST",
		Short: "Create or update functions",
		Long: `Deploy creates a function, or updates it when it exists, and waits until it is
ready to run. Deploy is declarative: the function ends up as the command
describes it, and settings left out take their defaults (memory 128 MB,
timeout 3s, no description, no environment, 512 MB of /tmp, text logs, no
tracing, no dead-letter target), also when updating.

--code is a directory, zipped on the fly, or a .zip file, sent as it is;
--image is a container image instead (docs/images.md).
With -f, deploy reads a manifest of one or more functions (docs/manifest.md)
and checks every entry before deploying any.`,
		Example: `  nimbus deploy hello --runtime python3.11 --handler app.handler --code ./hello
  nimbus deploy hello --runtime python3.11 --handler app.handler --code hello.zip \
      --memory 256 --timeout 30s --env GREETING=hi
  nimbus deploy resize --runtime python3.11 --handler app.handler --code ./resize \
      --ephemeral-storage 2048 --log-format json --log-level debug --dead-letter nats:resize.failed
  nimbus deploy hello --image registry.example.com:5000/hello:v1
  nimbus deploy web --image registry.example.com:5000/web:v1 --runtime http --image-port 8080
  nimbus deploy -f nimbus.yaml`,
		Args: cobra.MaximumNArgs(1),
		RunE: g.run(func(cmd *cobra.Command, c *client, args []string) error {
			specs, err := f.specs(cmd, args)
			if err != nil {
				return err
			}
			return g.deploy(cmd, c, specs, f.file != "")
		}),
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.file, "file", "f", "", "deploy the functions a manifest describes")
	fl.StringVar(&f.runtime, "runtime", "", "runtime, such as python3.11 (list them with: nimbus runtimes)")
	fl.StringVar(&f.handler, "handler", "", "handler, such as app.handler (not needed by provided runtimes)")
	fl.StringVar(&f.code, "code", "", "the code: a directory or a .zip file")
	fl.StringVar(&f.image, "image", "", "a container image instead of --code: host[:port]/repo:tag or @sha256:digest (no --runtime: Lambda's Runtime API; --runtime http: an HTTP server on port 9000)")
	fl.StringArrayVar(&f.imageCommand, "image-command", nil, "an argument of the command that replaces the image's CMD (repeatable, in order)")
	fl.StringArrayVar(&f.imageEntrypoint, "image-entrypoint", nil, "an argument of the entry point that replaces the image's ENTRYPOINT (repeatable, in order)")
	fl.StringVar(&f.imageWorkdir, "image-workdir", "", "working directory that replaces the image's WORKDIR")
	fl.IntVar(&f.imagePort, "image-port", 0, "the port an image of --runtime http serves on (default 9000)")
	fl.IntVar(&f.memory, "memory", 0, "memory in MB, 128 to 10240 (default 128)")
	fl.StringVar(&f.timeout, "timeout", "", "timeout: seconds (30) or a duration (30s, 2m), at most 15m (default 3s)")
	fl.StringArrayVar(&f.env, "env", nil, "environment variable KEY=VALUE (repeatable)")
	fl.StringVar(&f.description, "description", "", "description, at most 256 characters")
	fl.IntVar(&f.httpConcurrency, "http-concurrency", 0, "requests one instance of an HTTP function takes at once")
	fl.StringVar(&f.network, "network", "", "network of the function's instances: egress (outside addresses, not the node's host), none or host (default: the node's --function-network)")
	fl.StringVar(&f.idleTimeout, "idle-timeout", "", "stop this function's instances after this long unused (default: the node's --instance-idle-timeout)")
	fl.IntVar(&f.ephemeralMB, "ephemeral-storage", 0, "size of an instance's /tmp in MB, 512 to 10240 (default 512)")
	fl.StringVar(&f.tracing, "tracing", "", "tracing mode: Active or PassThrough (default PassThrough)")
	fl.StringVar(&f.logFormat, "log-format", "", "format of the function's logs: text or json (default text)")
	fl.StringVar(&f.logLevel, "log-level", "", "least level of the function's own log records kept, JSON logs only: TRACE, DEBUG, INFO, WARN, ERROR or FATAL (default INFO)")
	fl.StringVar(&f.systemLogLevel, "system-log-level", "", "least level of the platform's log records kept, JSON logs only: DEBUG, INFO or WARN (default INFO)")
	fl.StringVar(&f.deadLetter, "dead-letter", "", "where the events of asynchronous invocations that failed for good go: a function, an http(s) URL or nats:SUBJECT")
	return cmd
}

// specs returns the functions to deploy, from the manifest or the flags, all
// checked.
func (f *deployFlags) specs(cmd *cobra.Command, args []string) ([]functionSpec, error) {
	if f.file != "" {
		return f.manifestSpecs(cmd, args)
	}
	if len(args) == 0 {
		return nil, errors.New("deploy needs the function's NAME, or -f MANIFEST")
	}
	s := functionSpec{
		Name: args[0], Runtime: f.runtime, Handler: f.handler, Code: f.code,
		Description: f.description, MemoryMB: f.memory, HTTPConcurrency: f.httpConcurrency,
		Network: f.network, Image: f.image, ImageCommand: f.imageCommand, ImageEntrypoint: f.imageEntrypoint, ImageWorkdir: f.imageWorkdir,
		ImagePort: f.imagePort,
	}
	s.EphemeralMB, s.DeadLetter = f.ephemeralMB, f.deadLetter
	s.Tracing = canonical(f.tracing, tracingModes)
	s.LogFormat = canonical(f.logFormat, logFormats)
	s.AppLogLevel, s.SystemLogLevel = strings.ToUpper(f.logLevel), strings.ToUpper(f.systemLogLevel)
	if cmd.Flags().Changed("memory") && f.memory == 0 {
		return nil, errors.New("memory must be 128 to 10240 MB, not 0")
	}
	if cmd.Flags().Changed("ephemeral-storage") && f.ephemeralMB == 0 {
		return nil, errors.New("ephemeral-storage must be 512 to 10240 MB, not 0")
	}
	if cmd.Flags().Changed("http-concurrency") && f.httpConcurrency == 0 {
		return nil, errors.New("http-concurrency must be 1 to 1000, not 0")
	}
	if cmd.Flags().Changed("idle-timeout") {
		secs, err := parseIdleTimeout(f.idleTimeout)
		if err != nil {
			return nil, err
		}
		s.IdleTimeout = secs
	}
	if cmd.Flags().Changed("timeout") {
		t, err := parseTimeout(f.timeout)
		if err != nil {
			return nil, err
		}
		s.Timeout = t
	}
	env, err := parseEnv(f.env)
	if err != nil {
		return nil, err
	}
	s.Environment = env
	if err := s.validate(); err != nil {
		return nil, err
	}
	if s.Image == "" {
		if err := checkCode(s.Code); err != nil {
			return nil, err
		}
	}
	return []functionSpec{s}, nil
}

func (f *deployFlags) manifestSpecs(cmd *cobra.Command, args []string) ([]functionSpec, error) {
	if len(args) > 0 {
		return nil, fmt.Errorf("give either a NAME (%s) or -f MANIFEST, not both", args[0])
	}
	for _, name := range functionFlags {
		if cmd.Flags().Changed(name) {
			return nil, fmt.Errorf("--%s cannot be used with -f: the manifest describes the functions", name)
		}
	}
	data, err := os.ReadFile(f.file)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	specs, err := parseManifest(data, filepath.Dir(f.file))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.file, err)
	}
	var errs []error
	for _, s := range specs {
		if s.Image != "" {
			continue
		}
		if err := checkCode(s.Code); err != nil {
			errs = append(errs, fmt.Errorf("%s: function %q: %w", f.file, s.Name, err))
		}
	}
	return specs, errors.Join(errs...)
}

// deploy deploys specs one after the other, stopping at the first failure,
// and prints them: one in detail, or from a manifest as a list.
func (g *globals) deploy(cmd *cobra.Command, c *client, specs []functionSpec, fromManifest bool) error {
	var progress io.Writer
	if !g.json() {
		progress = cmd.ErrOrStderr()
		c.upload.w = progress
	}
	views := make([]functionView, 0, len(specs))
	for i := range specs {
		v, err := g.deployOne(cmd.Context(), c, &specs[i], progress)
		if err != nil {
			return fmt.Errorf("deploy %s: %w", specs[i].Name, err)
		}
		views = append(views, v)
	}
	out := cmd.OutOrStdout()
	switch {
	case fromManifest && g.json():
		return writeJSON(out, views)
	case fromManifest:
		return writeFunctionTable(out, views)
	case g.json():
		return writeJSON(out, views[0])
	}
	return writeFunctionDetail(out, views[0])
}

// deployOne creates the function, or updates it when it exists, and waits
// until it is ready. progress, when not nil, gets a line on what happened.
func (g *globals) deployOne(ctx context.Context, c *client, s *functionSpec, progress io.Writer) (functionView, error) {
	var zip []byte
	if s.Image == "" {
		var err error
		if zip, err = packageCode(s.Code); err != nil {
			return functionView{}, err
		}
	}
	c.upload.size = int64(len(zip)) // progress shows the zip's size
	defer func() { c.upload.size = 0 }()
	// Ask first rather than upload the code twice; a function created
	// meanwhile makes the create fail with a conflict, and is updated.
	exists, err := c.exists(ctx, s.Name)
	if err != nil {
		return functionView{}, err
	}
	if !exists {
		err = c.createFunction(ctx, s, zip)
		exists = isErrorCode(err, "ResourceConflictException")
	}
	verb := "Created"
	if exists {
		verb = "Updated"
		err = g.updateFunction(ctx, c, s, zip, progress)
	}
	if err != nil {
		return functionView{}, err
	}
	v, err := g.waitReady(ctx, c, s.Name, progress)
	if err != nil {
		return functionView{}, err
	}
	switch {
	case progress != nil && s.Image != "":
		fmt.Fprintf(progress, "%s function %s (image %s).\n", verb, s.Name, dash(v.ResolvedImageUri))
	case progress != nil:
		fmt.Fprintf(progress, "%s function %s (%s of code).\n", verb, s.Name, humanBytes(int64(len(zip))))
	}
	if err := syncTriggers(ctx, c, s.Name, s.Triggers, progress); err != nil {
		return functionView{}, err
	}
	if err := publishAndAlias(ctx, c, s, progress); err != nil {
		return functionView{}, err
	}
	return v, nil
}

// exists reports whether the function exists.
func (c *client) exists(ctx context.Context, name string) (bool, error) {
	_, err := c.lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(name)})
	if isErrorCode(err, "ResourceNotFoundException") {
		return false, nil
	}
	return err == nil, err
}

func (c *client) createFunction(ctx context.Context, s *functionSpec, zip []byte) error {
	in := &lambda.CreateFunctionInput{
		FunctionName: aws.String(s.Name),
		Runtime:      types.Runtime(s.Runtime),
		Handler:      optString(s.Handler),
		Description:  optString(s.Description),
		MemorySize:   aws.Int32(s.memory()),
		Timeout:      aws.Int32(s.timeout()),
		Code:         &types.FunctionCode{ZipFile: zip},
	}
	if s.Image != "" {
		in.PackageType, in.Code = types.PackageTypeImage, &types.FunctionCode{ImageUri: aws.String(s.Image)}
		in.ImageConfig = s.imageConfig()
	}
	if len(s.Environment) > 0 {
		in.Environment = &types.Environment{Variables: s.Environment}
	}
	if s.EphemeralMB > 0 {
		in.EphemeralStorage = s.ephemeralStorage()
	}
	if s.Tracing != "" {
		in.TracingConfig = s.tracingConfig()
	}
	if s.LogFormat != "" {
		in.LoggingConfig = s.loggingConfig()
	}
	if s.DeadLetter != "" {
		in.DeadLetterConfig = s.deadLetterConfig()
	}
	if s.Layers != nil {
		in.Layers = *s.Layers
	}
	_, err := c.lambda.CreateFunction(ctx, in, s.extensions(withoutValidation)...)
	return err
}

// imageConfig is an image function's ImageConfig (nil for a zip one).
func (s *functionSpec) imageConfig() *types.ImageConfig {
	if s.Image == "" {
		return nil
	}
	return &types.ImageConfig{EntryPoint: s.ImageEntrypoint, Command: s.ImageCommand, WorkingDirectory: optString(s.ImageWorkdir)}
}

// The settings as deploy sends them, with their defaults.
func (s *functionSpec) ephemeralStorage() *types.EphemeralStorage {
	return &types.EphemeralStorage{Size: aws.Int32(int32(cmp.Or(s.EphemeralMB, nimbus.DefaultEphemeralMB)))}
}

func (s *functionSpec) tracingConfig() *types.TracingConfig {
	return &types.TracingConfig{Mode: types.TracingMode(cmp.Or(s.Tracing, nimbus.TracingPassThrough))}
}

// loggingConfig sends both levels with JSON logs (INFO when not set), so
// that a level left out goes back to its default.
func (s *functionSpec) loggingConfig() *types.LoggingConfig {
	if s.LogFormat != nimbus.LogFormatJSON {
		return &types.LoggingConfig{LogFormat: types.LogFormatText}
	}
	return &types.LoggingConfig{LogFormat: types.LogFormatJson,
		ApplicationLogLevel: types.ApplicationLogLevel(cmp.Or(s.AppLogLevel, "INFO")),
		SystemLogLevel:      types.SystemLogLevel(cmp.Or(s.SystemLogLevel, "INFO"))}
}

func (s *functionSpec) deadLetterConfig() *types.DeadLetterConfig {
	return &types.DeadLetterConfig{TargetArn: aws.String(s.DeadLetter)}
}

// updateFunction updates the code, waits for that update, then sets the
// whole configuration, guarded by the revision the code update made.
func (g *globals) updateFunction(ctx context.Context, c *client, s *functionSpec, zip []byte, progress io.Writer) error {
	code := &lambda.UpdateFunctionCodeInput{FunctionName: aws.String(s.Name), ZipFile: zip}
	if s.Image != "" {
		code.ZipFile, code.ImageUri = nil, aws.String(s.Image)
	}
	_, err := c.lambda.UpdateFunctionCode(ctx, code)
	if err != nil {
		return err
	}
	v, err := g.waitReady(ctx, c, s.Name, progress)
	if err != nil {
		return err
	}
	env := s.Environment
	if env == nil {
		env = map[string]string{} // clears the variables the function had
	}
	_, err = c.lambda.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
		FunctionName: aws.String(s.Name),
		Runtime:      types.Runtime(s.Runtime),
		Handler:      optString(s.Handler),
		Description:  aws.String(s.Description),
		MemorySize:   aws.Int32(s.memory()),
		Timeout:      aws.Int32(s.timeout()),
		Environment:  &types.Environment{Variables: env},
		RevisionId:   optString(v.RevisionId),
		// Declarative: what the spec leaves out goes back to its default.
		EphemeralStorage: s.ephemeralStorage(),
		TracingConfig:    s.tracingConfig(),
		LoggingConfig:    s.loggingConfig(),
		DeadLetterConfig: s.deadLetterConfig(),
		Layers:           s.layers(),
		ImageConfig:      s.imageConfig(),
	}, s.extensions()...)
	return err
}

// extensions adds Nimbus's fields to a create or update request.
func (s *functionSpec) extensions(opts ...func(*lambda.Options)) []func(*lambda.Options) {
	fields := map[string]any{}
	if s.HTTPConcurrency > 0 {
		fields["NimbusHttpConcurrency"] = s.HTTPConcurrency
	}
	if s.IdleTimeout > 0 {
		fields["NimbusIdleTimeoutSeconds"] = s.IdleTimeout
	}
	if s.Network != "" {
		fields["NimbusNetwork"] = s.Network
	}
	if s.Image != "" {
		fields["NimbusImagePort"] = s.ImagePort // declarative: 0 is the default
	}
	if len(fields) > 0 {
		opts = append(opts, withBodyFields(fields))
	}
	return opts
}

// waitReady polls the function until it is Active with no update in
// progress, for at most g.waitTimeout. A failed state or update is an error
// with its reason.
func (g *globals) waitReady(ctx context.Context, c *client, name string, progress io.Writer) (functionView, error) {
	start := time.Now()
	delay := 50 * time.Millisecond
	announced := false
	for {
		out, err := c.lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(name)})
		if err != nil {
			return functionView{}, err
		}
		fc := out.Configuration
		if fc == nil {
			return functionView{}, errors.New("the server answered GetFunction without a configuration")
		}
		switch {
		case fc.State == types.StateFailed:
			return functionView{}, fmt.Errorf("function %s failed: %s", name, reason(fc.StateReason))
		case fc.LastUpdateStatus == types.LastUpdateStatusFailed:
			r := fc.LastUpdateStatusReason
			if r == nil {
				r = fc.StateReason
			}
			return functionView{}, fmt.Errorf("update of %s failed: %s", name, reason(r))
		case fc.State == types.StateActive && fc.LastUpdateStatus != types.LastUpdateStatusInProgress:
			return functionViewOf(out), nil
		}
		if time.Since(start) >= g.waitTimeout {
			return functionView{}, fmt.Errorf("function %s is not ready after %s: state %s, last update %s",
				name, g.waitTimeout, dash(string(fc.State)), dash(string(fc.LastUpdateStatus)))
		}
		if !announced && progress != nil && time.Since(start) >= g.announceAfter {
			fmt.Fprintf(progress, "Waiting for %s to be ready (state %s)...\n", name, dash(string(fc.State)))
			announced = true
		}
		select {
		case <-ctx.Done():
			return functionView{}, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, g.pollInterval)
	}
}

func reason(r *string) string {
	if r == nil || *r == "" {
		return "no reason given"
	}
	return *r
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// isErrorCode reports whether err is an API error of the given type.
func isErrorCode(err error, code string) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == code
}
