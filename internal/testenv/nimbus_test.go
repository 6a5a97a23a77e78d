package testenv

import (
	"debug/buildinfo"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildNimbusRace checks that the nimbus binary has the race detector
// exactly when the test binary has it.
func TestBuildNimbusRace(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the nimbus binary")
	}
	bin := filepath.Join(t.TempDir(), "nimbus")
	if err := BuildNimbus(bin); err != nil {
		t.Fatal(err)
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	race := false
	for _, s := range info.Settings {
		if s.Key == "-race" {
			race = s.Value == "true"
		}
	}
	if info.Path != nimbusPkg || race != Race {
		t.Fatalf("got %s with race %v, want %s with race %v", info.Path, race, nimbusPkg, Race)
	}
}

func TestBuildNimbusFails(t *testing.T) {
	// An output path under a file cannot be written.
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := BuildNimbus(filepath.Join(file, "nimbus"))
	if err == nil || !strings.HasPrefix(err.Error(), "build nimbus: ") {
		t.Fatalf("got %v, want a build nimbus error", err)
	}
}

func TestChildRaces(t *testing.T) {
	t.Setenv("GORACE", "history_size=3")
	dir := t.TempDir()
	reports := ChildRaces(dir)
	want := "history_size=3 halt_on_error=1 log_path=" + filepath.Join(dir, "race")
	if got := os.Getenv("GORACE"); got != want {
		t.Fatalf("GORACE: got %q, want %q", got, want)
	}
	if got := reports(); got != "" {
		t.Fatalf("no reports yet: got %q", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "race.42"), []byte("WARNING: DATA RACE\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := reports(); !strings.Contains(got, "race.42:\nWARNING: DATA RACE\n") {
		t.Fatalf("got %q, want the report in race.42", got)
	}
}
