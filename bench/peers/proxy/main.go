// Command proxy is the peer benchmark's "proxy" row: a plain
// net/http/httputil.ReverseProxy, as of-watchdog's http mode is built, in
// front of the URL given as its only argument. It is the floor of any
// function proxy: one more process and loopback hop, nothing else.
//
// It listens on a free port of 127.0.0.1 and prints the address as its first
// line of output.
package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: proxy UPSTREAM_URL")
		os.Exit(2)
	}
	up, err := url.Parse(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxy:", err)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxy:", err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr())
	rp := httputil.NewSingleHostReverseProxy(up)
	// Kept-alive connections to the upstream for up to 100 clients at
	// once, as of-watchdog keeps them.
	rp.Transport = &http.Transport{MaxIdleConns: 100, MaxIdleConnsPerHost: 100}
	err = http.Serve(ln, rp)
	fmt.Fprintln(os.Stderr, "proxy:", err)
	os.Exit(1)
}
