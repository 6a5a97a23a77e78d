// Package runtimes knows the function runtimes a Nimbus node offers and how
// to start an instance of each.
//
// Discover finds the interpreters this host has (python3.x, Node.js) beside
// the runtimes that need none (provided.al2023, provided.al2 and http).
// Install writes Nimbus's own Python and Node bootstraps, embedded in the
// binary, where sandboxed instances can read them; Dir names a runtime's
// directory among them, which the sandbox shows at /var/runtime. Command and
// Env say how to start an instance so that it speaks the Lambda Runtime API
// to internal/runtimeapi, naming the paths the instance sees (its code at
// /var/task where the sandbox can mount it there).
package runtimes

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/lazyre"
)

// Runtime kinds.
const (
	KindPython   = "python"
	KindNode     = "node"
	KindProvided = "provided"
	KindHTTP     = "http"
)

// Oldest interpreter versions the bootstraps support.
const (
	minPythonMinor = 8  // python3.8
	minNodeMajor   = 18 // nodejs18.x
)

// Log attribute keys.
const (
	keyPath   = "path"
	keyReason = "reason"
)

// Runtime is a runtime this node offers.
type Runtime struct {
	// ID is the name functions use, as Lambda spells it: "python3.11",
	// "nodejs20.x", "provided.al2023", "provided.al2", or Nimbus's "http".
	ID string
	// Kind is KindPython, KindNode, KindProvided or KindHTTP.
	Kind string
	// Interp is the interpreter for python and node runtimes, "" otherwise.
	Interp string
}

// Where Discover looks for interpreters.
var (
	pythonDirs = []string{"/usr/bin", "/usr/local/bin"}
	nodePaths  = []string{"/usr/bin/node", "/usr/local/bin/node"}
)

// Discover returns the runtimes this host offers, sorted by ID: python3.x
// for each world-executable python3.x (x >= 8) in /usr/bin and
// /usr/local/bin, nodejsNN.x for each world-executable node (NN >= 18) at
// /usr/bin/node or /usr/local/bin/node, and provided.al2023, provided.al2
// and http always. An interpreter is world-executable when an unprivileged
// user can run it: it and every directory above it (symbolic links resolved)
// are open to others, so an interpreter under /root is never offered. Where
// two interpreters give the same ID, the first directory listed wins.
func Discover(log *slog.Logger) []Runtime {
	return discover(log, pythonDirs, nodePaths)
}

func discover(log *slog.Logger, pyDirs, nodes []string) []Runtime {
	rts := []Runtime{
		{ID: "provided.al2023", Kind: KindProvided},
		{ID: "provided.al2", Kind: KindProvided},
		{ID: "http", Kind: KindHTTP},
	}
	rts = append(rts, findPython(log, pyDirs)...)
	rts = append(rts, findNode(log, nodes)...)
	slices.SortFunc(rts, func(a, b Runtime) int { return strings.Compare(a.ID, b.ID) })
	for _, rt := range rts {
		log.Debug("runtime available", nimbus.LogRuntime, rt.ID, keyPath, rt.Interp)
	}
	return rts
}

var pythonName = lazyre.New(`^python3\.(\d+)$`)

func findPython(log *slog.Logger, dirs []string) []Runtime {
	var rts []Runtime
	seen := map[string]bool{}
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			m := pythonName().FindStringSubmatch(e.Name())
			if m == nil {
				continue
			}
			minor, err := strconv.Atoi(m[1])
			id := e.Name()
			if err != nil || minor < minPythonMinor || seen[id] {
				continue
			}
			p := filepath.Join(dir, e.Name())
			if err := worldExecutable(p); err != nil {
				log.Debug("interpreter skipped", keyPath, p, keyReason, err)
				continue
			}
			seen[id] = true
			rts = append(rts, Runtime{ID: id, Kind: KindPython, Interp: p})
		}
	}
	return rts
}

var nodeVersion = lazyre.New(`^v(\d+)\.\d+\.\d+`)

func findNode(log *slog.Logger, paths []string) []Runtime {
	var rts []Runtime
	seen := map[string]bool{} // IDs and resolved paths
	for _, p := range paths {
		if err := worldExecutable(p); err != nil {
			if !os.IsNotExist(err) {
				log.Debug("interpreter skipped", keyPath, p, keyReason, err)
			}
			continue
		}
		real, err := filepath.EvalSymlinks(p)
		if err != nil || seen[real] {
			continue
		}
		seen[real] = true
		major, err := nodeMajor(p)
		if err != nil || major < minNodeMajor {
			log.Debug("interpreter skipped", keyPath, p, keyReason, fmt.Sprintf("version %d, %v", major, err))
			continue
		}
		id := "nodejs" + strconv.Itoa(major) + ".x"
		if seen[id] {
			continue
		}
		seen[id] = true
		rts = append(rts, Runtime{ID: id, Kind: KindNode, Interp: p})
	}
	return rts
}

// nodeMajor asks node for its version.
func nodeMajor(path string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("%s --version: %w", path, err)
	}
	m := nodeVersion().FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("%s --version: unexpected output %q", path, out)
	}
	return strconv.Atoi(string(m[1]))
}

// worldExecutable checks that a user who is neither the owner nor in the
// group can run the file at path: the file (symbolic links resolved) is
// readable and executable by others, and every directory above the link and
// above its target is searchable by others.
func worldExecutable(path string) error {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return err
	}
	fi, err := os.Stat(real)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o005 != 0o005 {
		return fmt.Errorf("%s is not a file others may read and execute (mode %v)", real, fi.Mode())
	}
	for _, dir := range []string{filepath.Dir(path), filepath.Dir(real)} {
		if err := searchable(dir); err != nil {
			return err
		}
	}
	return nil
}

// searchable checks that others may traverse dir and every directory above
// it.
func searchable(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for {
		fi, err := os.Stat(dir)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("directory %s is closed to others (mode %v)", dir, fi.Mode())
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil
		}
		dir = parent
	}
}

// InstallDirs returns the host directories the interpreters of rts are
// installed in, for a sandbox that shows instances only the host's system
// directories: for each interpreter (symbolic links resolved), the
// directory above its bin directory (/opt/node for /opt/node/bin/node), or
// its own directory. Interpreters under /usr add nothing.
func InstallDirs(rts []Runtime) []string {
	var dirs []string
	for _, rt := range rts {
		if rt.Interp == "" {
			continue
		}
		real, err := filepath.EvalSymlinks(rt.Interp)
		if err != nil || strings.HasPrefix(real, "/usr/") {
			continue
		}
		dir := filepath.Dir(real)
		if filepath.Base(dir) == "bin" && filepath.Dir(dir) != "/" {
			dir = filepath.Dir(dir)
		}
		if !slices.Contains(dirs, dir) {
			dirs = append(dirs, dir)
		}
	}
	return dirs
}
