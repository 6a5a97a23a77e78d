// Command behave is a test function built with aws-lambda-go whose payload
// says how to misbehave.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
)

type event struct {
	SleepMS    int    `json:"sleep_ms"`
	Exit       *int   `json:"exit"`
	PrintBytes int    `json:"print_bytes"`
	BigResp    int    `json:"big_response"`
	Error      string `json:"error"`
	Echo       any    `json:"echo"`
	Alloc      int    `json:"alloc_mb"`
	// Gate is the address of a test's gate: the request tells it when it
	// runs and waits there until the test lets it through.
	Gate string `json:"gate"`
}

var version = os.Getenv("VERSION")

// calls counts the invocations this instance took.
var calls int

func handle(ctx context.Context, e event) (any, error) {
	fmt.Fprintf(os.Stderr, "handling in pid %d\n", os.Getpid())
	calls++
	if e.PrintBytes > 0 {
		line := strings.Repeat("x", 99) + "\n"
		for n := 0; n < e.PrintBytes; n += len(line) {
			os.Stdout.WriteString(line)
		}
		fmt.Println("last line")
	}
	if e.Gate != "" {
		if err := pass(e.Gate); err != nil {
			return nil, err
		}
	}
	if e.SleepMS > 0 {
		time.Sleep(time.Duration(e.SleepMS) * time.Millisecond)
	}
	if e.Exit != nil {
		os.Exit(*e.Exit)
	}
	if e.Alloc > 0 {
		b := make([][]byte, 0)
		for i := 0; i < e.Alloc; i++ {
			chunk := make([]byte, 1<<20)
			for j := range chunk {
				chunk[j] = byte(j)
			}
			b = append(b, chunk)
		}
		return len(b), nil
	}
	if e.Error != "" {
		return nil, errors.New(e.Error)
	}
	if e.BigResp > 0 {
		return strings.Repeat("y", e.BigResp), nil
	}
	return map[string]any{"echo": e.Echo, "pid": os.Getpid(), "n": calls, "version": version, "trace": os.Getenv("_X_AMZN_TRACE_ID")}, nil
}

func main() { lambda.Start(handle) }

// pass tells the gate at addr that this request runs ("in PID"), waits for
// its answer, and tells it that the request ends ("out PID").
func pass(addr string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	r := bufio.NewReader(c)
	for _, msg := range []string{"in", "out"} {
		if _, err := fmt.Fprintf(c, "%s %d\n", msg, os.Getpid()); err != nil {
			return err
		}
		if _, err := r.ReadString('\n'); err != nil {
			return err
		}
	}
	return nil
}
