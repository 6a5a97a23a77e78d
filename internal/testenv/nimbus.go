package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// nimbusPkg is the nimbus command, by import path so that any package's
// tests can build it.
const nimbusPkg = "github.com/nimbus-serverless/nimbus/cmd/nimbus"

// BuildNimbus builds the nimbus command into the file out, for tests that
// run it as a child process. When this test binary runs under the race
// detector, so does the nimbus binary it builds: the end-to-end tests then
// check for data races in the server they start, not only in themselves.
// Call ChildRaces too, so that those races fail the tests.
func BuildNimbus(out string, buildArgs ...string) error {
	args := append([]string{"build", "-o", out}, buildArgs...)
	if Race {
		args = append(args, "-race")
	}
	b, err := exec.Command("go", append(args, nimbusPkg)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("build nimbus: %w\n%s", err, b)
	}
	return nil
}

// ChildRaces sets GORACE in this process's environment so that every
// race-enabled binary it starts from then on writes its race reports to
// files in dir (race.PID) and exits with status 66 at its first race,
// instead of printing to a stderr that a test may never read and dying by
// the test's kill. The function it returns gives the reports written so
// far, "" when there are none: a TestMain fails when there are some.
//
// dir must not contain spaces (GORACE separates its options with them).
func ChildRaces(dir string) func() string {
	opts := strings.TrimSpace(os.Getenv("GORACE") + " halt_on_error=1 log_path=" + filepath.Join(dir, "race"))
	os.Setenv("GORACE", opts)
	return func() string {
		files, _ := filepath.Glob(filepath.Join(dir, "race.*"))
		var b strings.Builder
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				data = []byte(err.Error() + "\n")
			}
			fmt.Fprintf(&b, "%s:\n%s", f, data)
		}
		return b.String()
	}
}
