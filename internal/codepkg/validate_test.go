package codepkg

import (
	"archive/zip"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nimbus-serverless/nimbus"
)

type badCase struct {
	name string
	zip  []byte
	lim  Limits
	want string // in the error message
}

var (
	badOnce  sync.Once
	badCache []badCase
)

// badCases are packages Validate and Unpack must reject, built once.
func badCases(tb testing.TB) []badCase {
	badOnce.Do(func() { badCache = buildBadCases(tb) })
	if badCache == nil {
		tb.Fatal("building the bad cases failed")
	}
	return badCache
}

func buildBadCases(tb testing.TB) []badCase {
	good := buildZip(tb, file("index.js", "exports.handler = async () => 'hi'\n"))
	stored := buildZip(tb, zent{name: "a.txt", body: "hello, world", store: true})
	flipped := bytes.Replace(stored, []byte("hello, world"), []byte("hellO, world"), 1)
	deflated := buildZip(tb, file("a.txt", strings.Repeat("lorem ipsum dolor sit amet ", 200)))
	corrupt := bytes.Clone(deflated)
	for i := 40; i < 60; i++ { // inside the deflate stream
		corrupt[i] ^= 0xff
	}
	manySmallBombs := make([]zent, 8)
	for i := range manySmallBombs {
		manySmallBombs[i] = file("z"+string(rune('a'+i)), zeros(256<<10))
	}
	return []badCase{
		{"not a zip", []byte("this is not a zip file at all"), Limits{}, "not a valid zip"},
		{"empty input", nil, Limits{}, "not a valid zip"},
		{"truncated", good[:len(good)/2], Limits{}, "not a valid zip"},
		{"truncated end", good[:len(good)-5], Limits{}, "not a valid zip"},
		{"crc mismatch", flipped, Limits{}, "CRC mismatch"},
		{"zero crc in header", rawZip(tb, "a.txt", "hello", zip.Store, 0), Limits{}, "CRC mismatch"},
		{"wrong crc in header", rawZip(tb, "a.txt", "hello", zip.Store, crc("hellO")), Limits{}, "CRC mismatch"},
		{"corrupt deflate", corrupt, Limits{}, "corrupt"},
		{"unknown method", rawZip(tb, "a.txt", "hello", 99, crc("hello")), Limits{}, "unsupported compression"},
		{"empty archive", buildZip(tb), Limits{}, "no files"},
		{"only directories", buildZip(tb, dir("a/"), dir("a/b/")), Limits{}, "no files"},
		{"dot dot", buildZip(tb, file("../evil", "x")), Limits{}, `".." element`},
		{"nested dot dot", buildZip(tb, file("a/b/../../../evil", "x")), Limits{}, `".." element`},
		{"dot dot inside", buildZip(tb, file("a/../b", "x")), Limits{}, `".." element`},
		{"absolute", buildZip(tb, file("/etc/passwd", "x")), Limits{}, "absolute"},
		{"backslash dot dot", buildZip(tb, file(`..\evil`, "x")), Limits{}, "backslash"},
		{"backslash nested", buildZip(tb, file(`a\..\..\evil`, "x")), Limits{}, "backslash"},
		{"backslash absolute", buildZip(tb, file(`\evil`, "x")), Limits{}, "backslash"},
		{"drive letter", buildZip(tb, file("C:/Windows/evil", "x")), Limits{}, "drive letter"},
		{"drive relative", buildZip(tb, file("c:evil", "x")), Limits{}, "drive letter"},
		{"nul in name", buildZip(tb, file("a\x00b", "x")), Limits{}, "NUL"},
		{"long element", buildZip(tb, file(strings.Repeat("a", 256), "x")), Limits{}, "255 bytes"},
		{"escaping symlink", buildZip(tb, file("a", "x"), link("l", "../outside")), Limits{}, "points outside"},
		{"deep escaping symlink", buildZip(tb, file("a/b/f", "x"), link("a/b/l", "../../../x")), Limits{}, "points outside"},
		{"absolute symlink", buildZip(tb, file("a", "x"), link("l", "/etc/passwd")), Limits{}, "absolute target"},
		{"empty symlink", buildZip(tb, file("a", "x"), link("l", "")), Limits{}, "empty target"},
		{"symlink through symlink", buildZip(tb, dir("d/"), link("d/up", ".."), link("x", "d/up/..")), Limits{}, "points outside"},
		{"symlink via escaping chain", buildZip(tb, file("f", "x"), link("a", "b/../.."), dir("b/"), link("b/c", "..")), Limits{}, "points outside"},
		{"symlink loop", buildZip(tb, link("a", "b"), link("b", "a")), Limits{}, "too many levels"},
		{"file under symlink", buildZip(tb, dir("d/"), link("l", "d"), file("l/x", "x")), Limits{}, "not a directory"},
		{"file under file", buildZip(tb, file("a", "x"), file("a/b", "y")), Limits{}, "not a directory"},
		{"file over directory", buildZip(tb, file("a/b", "y"), file("a", "x")), Limits{}, "not a directory"},
		{"duplicate", buildZip(tb, file("a.txt", "x"), file("a.txt", "y")), Limits{}, "more than one entry"},
		{"duplicate after cleaning", buildZip(tb, file("a.txt", "x"), file("./a.txt", "y")), Limits{}, "more than one entry"},
		{"duplicate directory", buildZip(tb, dir("d/"), dir("d/"), file("d/f", "x")), Limits{}, "more than one entry"},
		{"device", buildZip(tb, zent{name: "dev", mode: fs.ModeDevice | 0o644}), Limits{}, "unsupported file type"},
		{"fifo", buildZip(tb, zent{name: "p", mode: fs.ModeNamedPipe | 0o644}), Limits{}, "unsupported file type"},
		{"too many files", buildZip(tb, file("a", "1"), file("b", "2"), file("c", "3"), file("d", "4")), Limits{MaxFiles: 3}, "4 entries, over the limit of 3"},
		{"over unzipped", buildZip(tb, file("a", strings.Repeat("x", 60)), file("b", strings.Repeat("y", 60))), Limits{MaxUnzipped: 100}, "limit of 100 bytes unzipped"},
		{"over zipped", good, Limits{MaxZipped: 50}, "limit of 50 bytes zipped"},
		{"zip bomb entry", buildZip(tb, file("bomb", zeros(4<<20))), Limits{}, `entry "bomb" expands more than 200 times`},
		{"zip bomb total", buildZip(tb, manySmallBombs...), Limits{}, "package expands more than 200 times"},
		{"zip bomb over unzipped", buildZip(tb, file("bomb", zeros(3<<20))), Limits{MaxUnzipped: 2 << 20, MaxRatio: 1 << 40}, "unzipped"},
		{"symlink target too long", buildZip(tb, file("a", "x"), link("l", strings.Repeat("a/", 2100))), Limits{}, "target too long"},
	}
}

func TestValidateRejects(t *testing.T) {
	for _, tc := range badCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.zip, tc.lim)
			if !errors.Is(err, nimbus.ErrInvalid) {
				t.Fatalf("Validate: got %v, want an error wrapping ErrInvalid", err)
			}
			if got := err.Error(); !strings.Contains(got, tc.want) {
				t.Errorf("Validate: got message %q, want it to contain %q", got, tc.want)
			}
		})
	}
}

func TestUnpackRejects(t *testing.T) {
	for _, tc := range badCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dest := filepath.Join(parent, "out")
			err := Unpack(tc.zip, dest, tc.lim)
			if !errors.Is(err, nimbus.ErrInvalid) {
				t.Fatalf("Unpack: got %v, want an error wrapping ErrInvalid", err)
			}
			if got := err.Error(); !strings.Contains(got, tc.want) {
				t.Errorf("Unpack: got message %q, want it to contain %q", got, tc.want)
			}
			if got := listTree(t, parent); len(got) != 0 {
				t.Errorf("after Unpack: got %q in the parent, want nothing", got)
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	tests := []struct {
		name string
		zip  []byte
		lim  Limits
	}{
		{"one file", buildZip(t, file("index.js", "x")), Limits{}},
		{"empty file", buildZip(t, file("empty", "")), Limits{}},
		{"dot slash names", buildZip(t, dir("./"), file("./a/b.txt", "x")), Limits{}},
		{"explicit and implicit dirs", buildZip(t, file("a/b/c", "x"), dir("a/"), dir("a/b/")), Limits{}},
		{"symlink to sibling", buildZip(t, file("lib/real.so.1", "x"), link("lib/real.so", "real.so.1")), Limits{}},
		{"symlink up and down", buildZip(t, file("a/f", "x"), link("b/c/l", "../../a/f")), Limits{}},
		{"symlink to root", buildZip(t, file("f", "x"), link("d/root", "..")), Limits{}},
		{"symlink to dangling", buildZip(t, file("f", "x"), link("l", "missing/../f")), Limits{}},
		{"symlink chain", buildZip(t, file("d/f", "x"), link("a", "d"), link("b", "a/f")), Limits{}},
		{"only a symlink and a file", buildZip(t, link("l", "f"), file("f", "")), Limits{}},
		{"compressible but small", buildZip(t, file("zeros", zeros(1<<20))), Limits{}},
		{"exactly at the unzipped limit", buildZip(t, file("a", strings.Repeat("x", 100))), Limits{MaxUnzipped: 100}},
		{"exactly at the file limit", buildZip(t, file("a", "1"), file("b", "2")), Limits{MaxFiles: 2}},
		{"stored", buildZip(t, zent{name: "s", body: "stored", store: true}), Limits{}},
		{"stored with correct raw crc", rawZip(t, "a.txt", "hello", zip.Store, crc("hello")), Limits{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := Validate(tc.zip, tc.lim); err != nil {
				t.Errorf("Validate: got %v, want nil", err)
			}
		})
	}
}

func TestDigest(t *testing.T) {
	// The SHA-256 of "abc", from FIPS 180-2.
	hexd, lambda := Digest([]byte("abc"))
	if want := "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; hexd != want {
		t.Errorf("hex: got %s, want %s", hexd, want)
	}
	if want := "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="; lambda != want {
		t.Errorf("lambda: got %s, want %s", lambda, want)
	}
}

func TestValidDigest(t *testing.T) {
	good, _ := Digest(nil)
	tests := []struct {
		in   string
		want bool
	}{
		{good, true},
		{strings.ToUpper(good), false},
		{good[:63], false},
		{good + "0", false},
		{"../" + good[3:], false},
		{"", false},
		{strings.Repeat("g", 64), false},
	}
	for _, tc := range tests {
		if got := validDigest(tc.in); got != tc.want {
			t.Errorf("validDigest(%q): got %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestLimitsDefaults(t *testing.T) {
	got := Limits{MaxFiles: 7}.withDefaults()
	want := Limits{MaxZipped: 52428800, MaxUnzipped: 262144000, MaxFiles: 7, MaxRatio: 200}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got := DefaultLimits(); got != (Limits{52428800, 262144000, 20000, 200}) {
		t.Errorf("DefaultLimits: got %+v", got)
	}
}

// TestUnpackDiskError checks that a failure to write is a platform error,
// not a bad package, and leaves nothing behind.
func TestUnpackDiskError(t *testing.T) {
	err := Unpack(buildZip(t, file("a", "x")), filepath.Join(t.TempDir(), "missing", "out"), Limits{})
	if err == nil || errors.Is(err, nimbus.ErrInvalid) {
		t.Fatalf("got %v, want a platform error", err)
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want it to wrap fs.ErrNotExist", err)
	}
}
