package api

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/auth"
)

// codeURLExpiry is how long a function's code link stays valid, as
// Lambda's Code.Location (10 minutes).
const codeURLExpiry = 10 * time.Minute

// codeSigner presigns code links (safe for concurrent use).
var codeSigner = v4.NewSigner()

// codeURL is the link to fn's zip package (GET
// /nimbus/v1/functions/{name}/code) that GetFunction's Code.Location and
// Function Compute's GetFunctionCode answer: on a node with authentication,
// presigned with SigV4 by the caller's own key for codeURLExpiry, so that
// a plain GET (curl, a browser) downloads it, as Lambda's S3 link does; the
// download checks the key's access as any request.
func (s *Server) codeURL(r *http.Request, fn *nimbus.Function) string {
	u := url.URL{Scheme: "http", Host: r.Host, Path: "/nimbus/v1/functions/" + fn.Name + "/code"}
	q := url.Values{}
	if fn.Version != "" {
		q.Set("Qualifier", fn.Version)
	}
	u.RawQuery = q.Encode()
	p, ok := auth.From(r.Context())
	if s.cfg.Verifier == nil || !ok || p.AccessKeyID == "" {
		return u.String() // no authentication: the plain link works
	}
	secret, _, ok := s.cfg.Verifier.Secrets(p.AccessKeyID)
	if !ok {
		return u.String()
	}
	q.Set("X-Amz-Expires", strconv.Itoa(int(codeURLExpiry.Seconds())))
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u.String(), nil)
	if err != nil {
		return u.String()
	}
	signed, _, err := codeSigner.PresignHTTP(r.Context(), aws.Credentials{AccessKeyID: p.AccessKeyID, SecretAccessKey: secret},
		req, emptySHA256, s.cfg.Verifier.Service, s.cfg.Region, time.Now())
	if err != nil {
		return u.String()
	}
	return signed
}

// emptySHA256 is the hex SHA-256 of an empty body.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
