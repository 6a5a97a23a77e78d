package runtimes

import (
	"slices"
	"strconv"
	"strings"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/sandbox"
)

// An image function (nimbus.PackageImage) has one of two contracts, chosen
// by its Runtime:
//
//   - "" (Lambda's): its entry point speaks the Runtime API at
//     AWS_LAMBDA_RUNTIME_API, as a provided.* bootstrap does;
//   - "http" (Function Compute's custom container): it serves HTTP on its
//     port (nimbus.FunctionImage.Port, DefaultImagePort), as an http
//     function does on $PORT.

// ImageRuntime is the runtime an image function fn runs on.
func ImageRuntime(fn *nimbus.Function) Runtime {
	if fn.Runtime == KindHTTP {
		return Runtime{ID: "image-http", Kind: KindHTTP}
	}
	return Runtime{ID: "image", Kind: KindProvided}
}

// ImageConfig is what an image says of how it runs (its OCI config).
type ImageConfig struct {
	Entrypoint, Cmd, Env []string
	WorkingDir, User     string
}

// ImageCommand returns the program, arguments and working directory of an
// instance of image function fn whose image says cfg: ImageConfig's
// EntryPoint and Command replace the image's ENTRYPOINT and CMD (each on
// its own, as Lambda does), WorkingDirectory its WORKDIR ("/" if neither
// says). The program is args[0]; one without a slash is looked up in the
// instance's PATH. An empty command is an error (Lambda's
// Runtime.InvalidEntrypoint).
func ImageCommand(fn *nimbus.Function, cfg ImageConfig) (path string, args []string, dir string, err error) {
	im := fn.Image
	entry, cmd := cfg.Entrypoint, cfg.Cmd
	if im != nil && len(im.EntryPoint) > 0 {
		entry = im.EntryPoint
	}
	if im != nil && len(im.Command) > 0 {
		cmd = im.Command
	}
	args = append(slices.Clone(entry), cmd...)
	if len(args) == 0 || args[0] == "" {
		return "", nil, "", nimbus.Invalidf("The image has no entry point or command, and ImageConfig sets neither")
	}
	dir = cfg.WorkingDir
	if im != nil && im.WorkingDirectory != "" {
		dir = im.WorkingDirectory
	}
	if dir == "" {
		dir = "/"
	}
	return args[0], args, dir, nil
}

// ImagePort is the port an HTTP image function serves on.
func ImagePort(fn *nimbus.Function) int {
	if fn.Image != nil && fn.Image.Port != 0 {
		return fn.Image.Port
	}
	return nimbus.DefaultImagePort
}

// ImageEnv returns the environment, as "K=V" sorted by key, of an instance
// of image function fn on rt (ImageRuntime) whose image sets imageEnv: the
// image's ENV, with Lambda's LANG, PATH and TZ where it sets none, and
// GOMAXPROCS; the function's own variables over those; then Lambda's
// reserved variables (see Env), but for AWS_EXECUTION_ENV, which Lambda
// does not set for images. _HANDLER is the command's first argument past
// the entry point (what a runtime interface client takes as its handler).
// An HTTP image also gets PORT.
func ImageEnv(fn *nimbus.Function, rt Runtime, cfg ImageConfig, in sandbox.Paths, region string) []string {
	env := map[string]string{}
	for _, kv := range cfg.Env {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			env[k] = v
		}
	}
	for k, v := range map[string]string{"LANG": "en_US.UTF-8", "PATH": defaultPath, "TZ": ":UTC"} {
		if _, ok := env[k]; !ok {
			env[k] = v
		}
	}
	env["GOMAXPROCS"] = strconv.Itoa(CPUs(fn.MemoryMB))
	for k, v := range fn.Environment {
		if !reserved[k] {
			env[k] = v
		}
	}
	for k, v := range reservedEnv(fn, rt, "", in, region) {
		env[k] = v
	}
	delete(env, "AWS_EXECUTION_ENV")
	cmd := cfg.Cmd
	if fn.Image != nil && len(fn.Image.Command) > 0 {
		cmd = fn.Image.Command
	}
	env["_HANDLER"] = ""
	if len(cmd) > 0 {
		env["_HANDLER"] = cmd[0]
	}
	if rt.Kind == KindHTTP {
		env["PORT"] = strconv.Itoa(ImagePort(fn))
	}
	return envList(env)
}
