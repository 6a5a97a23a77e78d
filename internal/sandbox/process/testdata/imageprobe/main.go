// Command imageprobe is the program of the sandbox's image tests: built
// static, it is alone in an image's root, and prints what it sees there.
package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
)

func main() {
	ents, _ := os.ReadDir("/")
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	fmt.Printf("root: %s\n", strings.Join(names, " "))
	wd, _ := os.Getwd()
	fmt.Printf("cwd: %s\n", wd)
	fmt.Printf("uid: %d\n", os.Getuid())
	passwd, err := os.ReadFile("/etc/passwd")
	fmt.Printf("passwd: %q %v\n", passwd, err)
	group, err := os.ReadFile("/etc/group")
	fmt.Printf("group: %q %v\n", group, err)
	if err := os.WriteFile("/tmp/x", []byte("x"), 0o600); err != nil {
		fmt.Printf("tmp: %v\n", err)
	} else {
		fmt.Println("tmp: ok")
	}
	err = os.WriteFile("/x", []byte("x"), 0o600)
	var errno syscall.Errno
	if errors.As(err, &errno) {
		fmt.Printf("write /: %v\n", errno)
	} else {
		fmt.Printf("write /: %v\n", err)
	}
}
