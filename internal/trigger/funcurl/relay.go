package funcurl

import (
	"net/textproto"
	"strings"

	nethttp "net/http"
)

// hopHeaders are meaningful for one connection only and are not relayed
// (RFC 9110, section 7.6.1).
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// removeHop deletes hop-by-hop headers, including those the Connection
// header names.
func removeHop(h nethttp.Header) {
	for _, v := range h.Values("Connection") {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				h.Del(f)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

// ForwardHeader returns the headers an HTTP function receives for r: r's
// own without hop-by-hop headers and X-Nimbus-Key, plus X-Forwarded-For,
// X-Forwarded-Host and X-Forwarded-Proto.
func ForwardHeader(r *nethttp.Request) nethttp.Header {
	h := r.Header.Clone()
	if h == nil {
		h = nethttp.Header{}
	}
	removeHop(h)
	h.Del(KeyHeader)
	ip := SourceIP(r)
	if prior := h.Values("X-Forwarded-For"); len(prior) > 0 {
		ip = strings.Join(prior, ", ") + ", " + ip
	}
	h.Set("X-Forwarded-For", ip)
	h.Set("X-Forwarded-Host", r.Host)
	h.Set("X-Forwarded-Proto", scheme(r))
	return h
}

// CopyResponseHeader copies an HTTP function's response headers into dst,
// leaving out hop-by-hop headers.
func CopyResponseHeader(dst, src nethttp.Header) {
	src = src.Clone()
	removeHop(src)
	for k, vs := range src {
		dst[k] = append(dst[k], vs...)
	}
}
