package funcurl

import (
	"net/textproto"
	"slices"
	"strings"

	nethttp "net/http"
)

// hopHeaders are meaningful for one connection only and are not relayed
// (RFC 9110, section 7.6.1).
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// copyEndToEnd appends to dst the headers of src that are not hop-by-hop
// (those of hopHeaders and those src's Connection header names) and not
// also, in one pass without a copy of src to delete from.
func copyEndToEnd(dst, src nethttp.Header, also string) {
	named := src["Connection"]
	for k, vs := range src {
		if k == also || slices.Contains(hopHeaders, k) || (len(named) > 0 && namedIn(named, k)) {
			continue
		}
		dst[k] = append(dst[k], vs...)
	}
}

// namedIn reports whether the Connection header values conn name header k.
func namedIn(conn []string, k string) bool {
	for _, v := range conn {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" && textproto.CanonicalMIMEHeaderKey(f) == k {
				return true
			}
		}
	}
	return false
}

// ForwardHeader returns the headers an HTTP function receives for r: r's
// own without hop-by-hop headers and X-Nimbus-Key, plus X-Forwarded-For,
// X-Forwarded-Host and X-Forwarded-Proto.
func ForwardHeader(r *nethttp.Request) nethttp.Header {
	h := make(nethttp.Header, len(r.Header)+3)
	copyEndToEnd(h, r.Header, KeyHeader)
	ip := SourceIP(r)
	if prior := h.Values("X-Forwarded-For"); len(prior) > 0 {
		ip = strings.Join(prior, ", ") + ", " + ip
	}
	// Canonical names: set without Header.Set's canonicalising.
	h["X-Forwarded-For"] = []string{ip}
	h["X-Forwarded-Host"] = []string{r.Host}
	h["X-Forwarded-Proto"] = []string{scheme(r)}
	return h
}

// CopyResponseHeader copies an HTTP function's response headers into dst,
// leaving out hop-by-hop headers.
func CopyResponseHeader(dst, src nethttp.Header) {
	copyEndToEnd(dst, src, "")
}
