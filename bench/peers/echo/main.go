// Command echo is the peer benchmark's function: a plain net/http server that
// answers every request with its body. It is the "direct" row itself, the
// upstream of the reverse proxy and of of-watchdog, and the bootstrap of the
// Nimbus `http` function, so that every row runs the same code.
//
// It listens on 127.0.0.1:$PORT (as an `http` function must), or on a free
// port of 127.0.0.1 when PORT is unset or 0, and prints the address it
// listens on as its first line of output.
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
)

func main() {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", os.Getenv("PORT")))
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr())
	err = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		_, _ = w.Write(body)
	}))
	fmt.Fprintln(os.Stderr, "echo:", err)
	os.Exit(1)
}
