package runtimes

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/sandbox"
)

// The runtimes' own directories under the directory Install wrote, and
// their bootstraps in them.
const (
	pythonDir       = "python"
	nodeDir         = "node"
	pythonBootstrap = "bootstrap.py"
	nodeBootstrap   = "bootstrap.mjs"
)

// Dir returns the host directory of rt's own files under installDir (where
// Install wrote the bootstraps): the instance's runtime directory
// (sandbox.Spec.RuntimeDir, LAMBDA_RUNTIME_DIR). It is "" for the runtimes
// that bring their own bootstrap (provided.*, http).
func Dir(rt Runtime, installDir string) string {
	switch rt.Kind {
	case KindPython:
		return filepath.Join(installDir, pythonDir)
	case KindNode:
		return filepath.Join(installDir, nodeDir)
	default:
		return ""
	}
}

// Command returns how to start an instance of rt whose code is in codeDir
// and whose runtime directory (see Dir) is runtimeDir on the host, and which
// sees them at in.TaskRoot and in.RuntimeDir (see sandbox.PathsOf). Command
// checks the host paths; the command names the instance's. args includes
// args[0].
//
//   - provided.* and http: TaskRoot/bootstrap, which must be an executable
//     file (an http bootstrap serves HTTP on $PORT rather than calling the
//     Runtime API);
//   - python: Interp -u RuntimeDir/bootstrap.py;
//   - node: Interp RuntimeDir/bootstrap.mjs.
//
// Errors: an error wrapping nimbus.ErrInvalid (a *nimbus.UserError with
// Lambda's "Couldn't find valid bootstrap(s): [path]", the path as the
// instance sees it) when the function's bootstrap is missing or not
// executable, or when rt is of no known kind; another error when the
// runtime's own bootstrap is not installed.
func Command(rt Runtime, codeDir, runtimeDir string, in sandbox.Paths) (path string, args []string, err error) {
	switch rt.Kind {
	case KindProvided, KindHTTP:
		if !isExecutable(filepath.Join(codeDir, "bootstrap")) {
			return "", nil, nimbus.Invalidf("Couldn't find valid bootstrap(s): [%s]", filepath.Join(in.TaskRoot, "bootstrap"))
		}
		p := filepath.Join(in.TaskRoot, "bootstrap")
		return p, []string{p}, nil
	case KindPython:
		if err := installed(rt, runtimeDir, pythonBootstrap); err != nil {
			return "", nil, err
		}
		return rt.Interp, []string{rt.Interp, "-u", filepath.Join(in.RuntimeDir, pythonBootstrap)}, nil
	case KindNode:
		if err := installed(rt, runtimeDir, nodeBootstrap); err != nil {
			return "", nil, err
		}
		return rt.Interp, []string{rt.Interp, filepath.Join(in.RuntimeDir, nodeBootstrap)}, nil
	default:
		return "", nil, nimbus.Invalidf("Runtime %s is of unknown kind %q", rt.ID, rt.Kind)
	}
}

// isExecutable reports whether p (symbolic links followed) is a file with an
// execute bit.
func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// installed checks that the bootstrap file is in runtimeDir and that rt has
// an interpreter.
func installed(rt Runtime, runtimeDir, file string) error {
	if rt.Interp == "" {
		return fmt.Errorf("runtime %s: no interpreter", rt.ID)
	}
	if _, err := os.Stat(filepath.Join(runtimeDir, file)); err != nil || runtimeDir == "" {
		return fmt.Errorf("runtime %s bootstrap (runtimes.Install not run?): %w", rt.ID, cmp.Or(err, fs.ErrNotExist))
	}
	return nil
}

// reserved are the variables Lambda sets and a function may not override.
// Unlike Lambda, Nimbus lets functions set AWS credentials
// (AWS_ACCESS_KEY_ID and co.): it has no execution role to supply them.
var reserved = map[string]bool{
	"_HANDLER":                        true,
	"_X_AMZN_TRACE_ID":                true,
	"AWS_DEFAULT_REGION":              true,
	"AWS_REGION":                      true,
	"AWS_EXECUTION_ENV":               true,
	"AWS_LAMBDA_FUNCTION_NAME":        true,
	"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": true,
	"AWS_LAMBDA_FUNCTION_VERSION":     true,
	"AWS_LAMBDA_INITIALIZATION_TYPE":  true,
	"AWS_LAMBDA_LOG_GROUP_NAME":       true,
	"AWS_LAMBDA_LOG_STREAM_NAME":      true,
	"AWS_LAMBDA_RUNTIME_API":          true,
	"LAMBDA_TASK_ROOT":                true,
	"LAMBDA_RUNTIME_DIR":              true,
}

// IsReserved reports whether name is a variable Lambda reserves: a function's
// own value for it is ignored by Env (and CreateFunction should refuse it).
func IsReserved(name string) bool { return reserved[name] }

// DefaultRegion is the region an instance sees when the node has none set.
const DefaultRegion = "us-east-1"

// defaultPath is the PATH of instances.
const defaultPath = "/usr/local/bin:/usr/bin:/bin"

// CPUs is how many threads a Go function runs Go code on at once
// (GOMAXPROCS) with memoryMB of memory: its CPU share rounded up
// (nimbus.MemoryPerCPU a CPU), at most the host's CPUs. More would only
// contend for the share the sandbox's CPU weight gives it (measured: +35 %
// throughput for a 128 MB Go function at 16 connections on 2 CPUs).
func CPUs(memoryMB int) int {
	memoryMB = cmp.Or(memoryMB, nimbus.DefaultMemoryMB)
	return min(runtime.NumCPU(), (memoryMB+nimbus.MemoryPerCPU-1)/nimbus.MemoryPerCPU)
}

// Env returns the environment, as "K=V" sorted by key, of an instance of fn
// on runtime rt whose Runtime API is at apiAddr and which sees its code and
// runtime directories at in.TaskRoot and in.RuntimeDir. It is Lambda's
// standard environment, and GOMAXPROCS (CPUs), with the function's own
// variables merged in: they may override LANG, PATH, TZ, LD_LIBRARY_PATH,
// GOMAXPROCS, PYTHONPATH and NODE_PATH (which
// name the layers' directories at in.Opt, if any, as Lambda's do), but not
// the reserved variables (see IsReserved), whose values they set are dropped.
// LAMBDA_TASK_ROOT is in.TaskRoot; LAMBDA_RUNTIME_DIR is in.RuntimeDir, or
// in.TaskRoot for a runtime without one. An empty region means
// DefaultRegion.
func Env(fn *nimbus.Function, rt Runtime, apiAddr string, in sandbox.Paths, region string) []string {
	codeDir := in.TaskRoot
	env := map[string]string{
		"LANG":            "en_US.UTF-8",
		"PATH":            defaultPath,
		"TZ":              ":UTC",
		"LD_LIBRARY_PATH": codeDir + ":" + filepath.Join(codeDir, "lib"),
		"GOMAXPROCS":      strconv.Itoa(CPUs(fn.MemoryMB)),
	}
	switch rt.Kind {
	case KindPython:
		env["PYTHONPATH"] = codeDir
	case KindNode:
		env["NODE_PATH"] = filepath.Join(codeDir, "node_modules") + ":" + codeDir
	}
	if in.Opt != "" {
		optEnv(env, rt, in.Opt)
	}
	for k, v := range fn.Environment {
		if !reserved[k] {
			env[k] = v
		}
	}
	for k, v := range reservedEnv(fn, rt, apiAddr, in, region) {
		env[k] = v
	}
	return envList(env)
}

// reservedEnv returns the reserved variables of an instance.
func reservedEnv(fn *nimbus.Function, rt Runtime, apiAddr string, in sandbox.Paths, region string) map[string]string {
	if region == "" {
		region = DefaultRegion
	}
	memory := fn.MemoryMB
	if memory == 0 {
		memory = nimbus.DefaultMemoryMB
	}
	version := fn.Qualifier()
	env := map[string]string{
		"_HANDLER":                        fn.Handler,
		"AWS_REGION":                      region,
		"AWS_DEFAULT_REGION":              region,
		"AWS_EXECUTION_ENV":               "AWS_Lambda_" + rt.ID,
		"AWS_LAMBDA_FUNCTION_NAME":        fn.Name,
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": strconv.Itoa(memory),
		"AWS_LAMBDA_FUNCTION_VERSION":     version,
		"AWS_LAMBDA_INITIALIZATION_TYPE":  "on-demand",
		"AWS_LAMBDA_LOG_GROUP_NAME":       "/aws/lambda/" + fn.Name,
		"AWS_LAMBDA_LOG_STREAM_NAME":      logStream(version),
		"AWS_LAMBDA_RUNTIME_API":          apiAddr,
		"LAMBDA_TASK_ROOT":                in.TaskRoot,
		"LAMBDA_RUNTIME_DIR":              cmp.Or(in.RuntimeDir, in.TaskRoot),
	}
	if fc := fn.FC; fc != nil && fc.Conventions && (rt.Kind == KindPython || rt.Kind == KindNode) {
		fcEnv(env, fn, memory, region, in)
	}
	return env
}

// FCEnv is the variable that switches the Python and Node bootstraps to
// Function Compute's conventions (nimbus.FCSettings.Conventions).
const FCEnv = "_NIMBUS_FC"

// fcEnv adds Function Compute's variables, and the bootstraps' switch to
// its conventions, for a function with Function Compute's conventions.
func fcEnv(env map[string]string, fn *nimbus.Function, memory int, region string, in sandbox.Paths) {
	timeout := cmp.Or(fn.Timeout, nimbus.DefaultTimeout)
	env[FCEnv] = "1"
	env["_NIMBUS_FC_TIMEOUT"] = strconv.Itoa(timeout)
	env["FC_FUNCTION_NAME"] = fn.Name
	env["FC_FUNCTION_HANDLER"] = fn.Handler
	env["FC_FUNCTION_MEMORY_SIZE"] = strconv.Itoa(memory)
	env["FC_REGION"] = region
	env["FC_FUNC_CODE_PATH"] = in.TaskRoot
	if i := fn.FC.Initializer; i != nil {
		env["FC_INITIALIZER_HANDLER"] = i.Handler
		env["FC_INITIALIZATION_TIMEOUT"] = strconv.Itoa(i.Timeout)
	}
	if p := fn.FC.PreStop; p != nil {
		env["FC_PRESTOP_HANDLER"] = p.Handler
		env["FC_PRESTOP_TIMEOUT"] = strconv.Itoa(p.Timeout)
	}
}

// logStream returns a log stream name as Lambda makes them:
// "2006/01/02/[$LATEST]" and 32 hex digits.
func logStream(version string) string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails
	return time.Now().UTC().Format("2006/01/02") + "/[" + version + "]" + hex.EncodeToString(b[:])
}

// optEnv adds the directories of a function's layers, merged at opt, to
// env as Lambda does: bin/ to PATH, lib/ to LD_LIBRARY_PATH, python/ (and
// its site-packages) to PYTHONPATH, nodejs/node_modules (and
// nodejs/node<major>/node_modules) to NODE_PATH.
func optEnv(env map[string]string, rt Runtime, opt string) {
	env["PATH"] += ":" + opt + "/bin"
	env["LD_LIBRARY_PATH"] += ":" + opt + "/lib"
	switch rt.Kind {
	case KindPython:
		env["PYTHONPATH"] += ":" + opt + "/python/lib/" + rt.ID + "/site-packages:" + opt + "/python"
	case KindNode:
		dirs := opt + "/nodejs/node_modules:"
		if major, ok := strings.CutPrefix(strings.TrimSuffix(rt.ID, ".x"), "nodejs"); ok {
			dirs = opt + "/nodejs/node" + major + "/node_modules:" + dirs
		}
		env["NODE_PATH"] = dirs + env["NODE_PATH"]
	}
}

// zygoteEnv marks a bootstrap started as a zygote (see Zygote); the
// bootstraps' ZYGOTE_ENV.
const zygoteEnv = "_NIMBUS_ZYGOTE"

// startVar reports whether an interpreter of kind (or the dynamic loader,
// or the C library) reads variable name as it starts, so that setting it
// later would not have the same effect: Python's PYTHON* variables;
// Node's NODE_* (NODE_PATH makes the module search path at start,
// NODE_OPTIONS the flags) and libuv's UV_*.
func startVar(kind, name string) bool {
	prefixes := []string{"LD_", "LC_", "MALLOC_", "GLIBC_"}
	switch kind {
	case KindPython:
		prefixes = append(prefixes, "PYTHON")
	case KindNode:
		prefixes = append(prefixes, "NODE_", "UV_")
	}
	for _, p := range prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return name == "LANG" || name == "LANGUAGE" || name == "HOME"
}

// Zygote returns the pre-initialised interpreter of rt (see
// sandbox.Zygote) whose runtime directory is runtimeDir on the host, seen
// at sandbox.RuntimeRoot, or nil if rt has none (python and node have
// one). It is the bootstrap started as Command starts it, with the
// variables of the standard environment that the interpreter reads as it
// starts (see Env: those of a function without variables of its own or
// layers); it imports what the bootstrap needs, then waits for its
// instance.
func Zygote(rt Runtime, runtimeDir string) *sandbox.Zygote {
	if rt.Kind != KindPython && rt.Kind != KindNode {
		return nil
	}
	in := sandbox.Paths{TaskRoot: sandbox.TaskRoot, RuntimeDir: sandbox.RuntimeRoot}
	path, args, err := Command(rt, "", runtimeDir, in)
	if err != nil {
		return nil
	}
	env := append([]string{zygoteEnv + "=1"}, startVars(rt.Kind, Env(&nimbus.Function{}, rt, "", in, ""))...)
	return &sandbox.Zygote{Path: path, Args: args, Env: env, RuntimeDir: runtimeDir}
}

// ZygoteFor returns Zygote(rt, runtimeDir) if an instance of rt with
// environment env, which sees its directories at in, may begin as that
// zygote: it sees them at the fixed paths (sandbox.TaskRoot and
// sandbox.RuntimeRoot) and env gives the variables read at start the
// zygote's values (a function's own PYTHONPATH, say, or its layers', rule
// it out). Else it returns nil.
func ZygoteFor(rt Runtime, runtimeDir string, in sandbox.Paths, env []string) *sandbox.Zygote {
	z := Zygote(rt, runtimeDir)
	if z == nil || in.TaskRoot != sandbox.TaskRoot || in.RuntimeDir != sandbox.RuntimeRoot {
		return nil
	}
	if !slices.Equal(startVars(rt.Kind, env), startVars(rt.Kind, z.Env)) {
		return nil
	}
	return z
}

// startVars returns the variables of env that startVar names, sorted.
func startVars(kind string, env []string) []string {
	var out []string
	for _, kv := range env {
		if name, _, _ := strings.Cut(kv, "="); startVar(kind, name) {
			out = append(out, kv)
		}
	}
	slices.Sort(out)
	return out
}

// envList returns env as "K=V" strings, sorted by name.
func envList(env map[string]string) []string {
	keys := slices.Sorted(maps.Keys(env))
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k + "=" + env[k]
	}
	return out
}
