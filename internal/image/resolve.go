package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Resolve asks the registry what ref (a tag or a digest:
// "host:port/repo:tag", "host/repo@sha256:...") names now and returns it
// pinned to the digest of the manifest for the node's platform:
// "host:port/repo@sha256:<hex>". A multi-platform index is resolved to the
// node's platform.
//
// Errors: ErrInvalidRef, ErrNotFound, ErrAuth, ErrUnavailable, ErrInvalidImage
// (no manifest for this platform: the message names those offered), or
// ctx's error.
func (s *Store) Resolve(ctx context.Context, ref string) (string, error) {
	r, err := s.parse(ref)
	if err != nil {
		return "", err
	}
	d, err := s.pick(ctx, r)
	if err != nil {
		return "", err
	}
	return r.Context().Name() + "@" + d.Digest.String(), nil
}

// parse parses ref, reaching the hosts of Options.Insecure over HTTP.
func (s *Store) parse(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref, name.StrictValidation)
	if err != nil {
		r, err = name.ParseReference(ref) // a tag may be implied (":latest"), as Docker does
	}
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrInvalidRef, ref, err)
	}
	if slices.Contains(s.opts.Insecure, r.Context().RegistryStr()) {
		r, err = name.ParseReference(ref, name.Insecure)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %v", ErrInvalidRef, ref, err)
		}
	}
	return r, nil
}

// pick fetches r's manifest and, for an index, the descriptor of the
// manifest for the node's platform; it checks an image's config names the
// platform (when it names one).
func (s *Store) pick(ctx context.Context, r name.Reference) (*remote.Descriptor, error) {
	opts := s.remoteOptions(ctx, r)
	d, err := remote.Get(r, opts...)
	if err != nil {
		return nil, s.registryError(r, err)
	}
	if d.MediaType.IsIndex() {
		idx, err := d.ImageIndex()
		if err != nil {
			return nil, s.registryError(r, err)
		}
		m, err := idx.IndexManifest()
		if err != nil {
			return nil, s.registryError(r, err)
		}
		var offered []string
		for _, c := range m.Manifests {
			if c.Platform == nil || !c.MediaType.IsImage() {
				continue
			}
			if platformMatches(*c.Platform, s.platform) {
				return remote.Get(r.Context().Digest(c.Digest.String()), opts...)
			}
			if p := c.Platform.String(); p != "unknown/unknown" {
				offered = append(offered, p)
			}
		}
		return nil, fmt.Errorf("%w: %s has no manifest for this node's platform %s (it offers %s)",
			ErrInvalidImage, r, s.platform.String(), orNone(offered))
	}
	if !d.MediaType.IsImage() {
		return nil, fmt.Errorf("%w: %s is a %s, not a container image", ErrInvalidImage, r, d.MediaType)
	}
	img, err := d.Image()
	if err != nil {
		return nil, s.registryError(r, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, s.registryError(r, err)
	}
	if p := cf.Platform(); p != nil && p.OS != "" && !platformMatches(*p, s.platform) {
		return nil, fmt.Errorf("%w: %s is an image for %s, not for this node's platform %s",
			ErrInvalidImage, r, p.String(), s.platform.String())
	}
	return d, nil
}

func orNone(l []string) string {
	if len(l) == 0 {
		return "no platform"
	}
	return strings.Join(l, ", ")
}

// platformMatches says whether an image for got runs on want: the same OS and
// architecture, and the same variant when both name one.
func platformMatches(got, want v1.Platform) bool {
	if got.OS != want.OS || got.Architecture != want.Architecture {
		return false
	}
	return got.Variant == "" || want.Variant == "" || got.Variant == want.Variant
}

// remoteOptions are the options of every request to r's registry: its
// credentials, plain HTTP for insecure hosts, the stall timeout, a short
// retry back-off.
func (s *Store) remoteOptions(ctx context.Context, r name.Reference) []remote.Option {
	auth := authn.Anonymous
	if c, ok := s.opts.Credentials[r.Context().RegistryStr()]; ok {
		auth = authn.FromConfig(authn.AuthConfig{
			Username: c.Username, Password: c.Password,
			RegistryToken: c.Token, IdentityToken: c.IdentityToken,
		})
	}
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuth(auth),
		remote.WithTransport(newStallTransport(baseTransport(), s.opts.StallTimeout)),
		remote.WithRetryBackoff(remote.Backoff{Duration: 250 * time.Millisecond, Factor: 3, Jitter: 0.1, Steps: 3}),
		remote.WithUserAgent("nimbus"),
	}
}

// baseTransport is http.DefaultTransport's settings with a dial timeout of
// its own (a registry that does not answer the connection is unreachable,
// not stalled).
func baseTransport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = dialContext
	t.ForceAttemptHTTP2 = true
	return t
}

// dialContext dials registries (tests point names at their own server).
var dialContext = (&net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}).DialContext

// registryError turns an error of go-containerregistry about r into one of
// the sentinel errors with a one-line message. Credentials never reach it:
// they travel in headers, which no error quotes.
func (s *Store) registryError(r name.Reference, err error) error {
	host := r.Context().RegistryStr()
	var te *transport.Error
	var stall *stallError
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		if errors.As(err, &stall) {
			return fmt.Errorf("%w: %v", ErrUnavailable, stall)
		}
		return err
	case errors.As(err, &stall):
		return fmt.Errorf("%w: %v", ErrUnavailable, stall)
	case errors.As(err, &te):
		return s.statusError(r, te)
	case errors.As(err, &ne), isDialError(err):
		return fmt.Errorf("%w: registry %s is unreachable: %v", ErrUnavailable, host, rootCause(err))
	}
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, r, err)
}

func (s *Store) statusError(r name.Reference, te *transport.Error) error {
	host := r.Context().RegistryStr()
	code := func(c transport.ErrorCode) bool {
		return slices.ContainsFunc(te.Errors, func(d transport.Diagnostic) bool { return d.Code == c })
	}
	_, hasCreds := s.opts.Credentials[host]
	switch {
	case te.StatusCode == http.StatusUnauthorized || code(transport.UnauthorizedErrorCode):
		if hasCreds {
			return fmt.Errorf("%w: registry %s refused the credentials configured for it (401) for %s", ErrAuth, host, r.Context())
		}
		return fmt.Errorf("%w: registry %s requires credentials (401) for %s and none are configured for it", ErrAuth, host, r.Context())
	case te.StatusCode == http.StatusForbidden || code(transport.DeniedErrorCode):
		return fmt.Errorf("%w: registry %s denied access (403) to %s", ErrAuth, host, r.Context())
	case code(transport.ManifestUnknownErrorCode):
		return fmt.Errorf("%w: %s: manifest unknown (no such tag or digest)", ErrNotFound, r)
	case code(transport.NameUnknownErrorCode):
		return fmt.Errorf("%w: %s: repository %s unknown", ErrNotFound, r, r.Context().RepositoryStr())
	case code(transport.BlobUnknownErrorCode):
		return fmt.Errorf("%w: %s: a blob of the image is missing from the registry", ErrNotFound, r)
	case te.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %s: manifest unknown (404)", ErrNotFound, r)
	}
	return fmt.Errorf("%w: registry %s answered %d %s for %s", ErrUnavailable, host, te.StatusCode, http.StatusText(te.StatusCode), r)
}

func isDialError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe)
}

// rootCause is the innermost error, without the URL and method prefixes
// that only lengthen the message ("dial tcp 127.0.0.1:1: connect: connection
// refused").
func rootCause(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe
	}
	return err
}

// ioError is the error of reading a layer's bytes, as a one-liner: a stall,
// a truncated blob, a digest mismatch, or the registry going away.
func (s *Store) ioError(r name.Reference, layer string, err error) error {
	var stall *stallError
	switch {
	case errors.As(err, &stall):
		return fmt.Errorf("%w: %v (layer %s)", ErrUnavailable, stall, layer)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: layer %s of %s is truncated (unexpected end of data)", ErrInvalidImage, layer, r)
	case strings.Contains(err.Error(), "error verifying"):
		return fmt.Errorf("%w: layer %s of %s is corrupt: digest mismatch (%v)", ErrInvalidImage, layer, r, err)
	case errors.Is(err, ErrInvalidImage), errors.Is(err, context.Canceled):
		return err
	}
	return s.registryError(r, err)
}
