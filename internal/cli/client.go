package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/nimbus-serverless/nimbus/internal/sdkhttp"
)

// client talks to one Nimbus node.
type client struct {
	endpoint string // without a trailing slash
	region   string
	creds    aws.Credentials // empty: requests go unsigned
	lambda   *lambda.Client
	http     *http.Client
	// upload shows the progress of large request bodies when its writer is
	// set.
	upload *progressTransport
}

func newClient(endpoint, region string, creds aws.Credentials) *client {
	tr := &progressTransport{base: sdkhttp.Transport(http.DefaultTransport.(*http.Transport).Clone()), threshold: progressThreshold}
	hc := &http.Client{Transport: tr}
	var provider aws.CredentialsProvider = aws.AnonymousCredentials{}
	if creds.HasKeys() {
		provider = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return creds, nil })
	}
	lc := lambda.New(lambda.Options{
		BaseEndpoint: aws.String(endpoint),
		Region:       region,
		Credentials:  provider,
		Retryer:      retry.AddWithMaxAttempts(retry.NewStandard(), 1),
		HTTPClient:   hc,
	})
	return &client{endpoint: endpoint, region: region, creds: creds, lambda: lc, http: hc, upload: tr}
}

// sign signs req for Nimbus (SigV4, service lambda) with the payload hash
// given, unless the client has no credentials.
func (c *client) sign(req *http.Request, payloadHash string) error {
	if !c.creds.HasKeys() {
		return nil
	}
	req.Header.Set("X-Amz-Content-Sha256", payloadHash)
	if err := v4.NewSigner().SignHTTP(req.Context(), c.creds, req, payloadHash, "lambda", c.region, time.Now()); err != nil {
		return fmt.Errorf("sign request: %w", err)
	}
	return nil
}

// close releases the client's idle connections.
func (c *client) close() { c.http.CloseIdleConnections() }

// withoutValidation drops the SDK's client-side input validation, which
// insists on fields Nimbus does not need (CreateFunction's Role).
func withoutValidation(o *lambda.Options) {
	o.APIOptions = append(o.APIOptions, func(s *middleware.Stack) error {
		_, err := s.Initialize.Remove("OperationInputValidation")
		return err
	})
}

// withBodyFields adds fields to the JSON body the SDK serialized: Nimbus's
// extensions to Lambda's shapes (NimbusHttpConcurrency), which the SDK does
// not know.
func withBodyFields(fields map[string]any) func(*lambda.Options) {
	return func(o *lambda.Options) {
		o.APIOptions = append(o.APIOptions, func(s *middleware.Stack) error {
			return s.Serialize.Add(middleware.SerializeMiddlewareFunc("NimbusBodyFields",
				func(ctx context.Context, in middleware.SerializeInput, next middleware.SerializeHandler) (
					middleware.SerializeOutput, middleware.Metadata, error,
				) {
					req, ok := in.Request.(*smithyhttp.Request)
					if !ok {
						return middleware.SerializeOutput{}, middleware.Metadata{}, fmt.Errorf("add body fields: unexpected request type %T", in.Request)
					}
					rc, err := addBodyFields(req, fields)
					if err != nil {
						return middleware.SerializeOutput{}, middleware.Metadata{}, fmt.Errorf("add body fields: %w", err)
					}
					in.Request = rc
					return next.HandleSerialize(ctx, in)
				}), middleware.After)
		})
	}
}

func addBodyFields(req *smithyhttp.Request, fields map[string]any) (*smithyhttp.Request, error) {
	body := map[string]json.RawMessage{}
	if s := req.GetStream(); s != nil {
		b, err := io.ReadAll(s)
		if err != nil {
			return nil, err
		}
		if len(b) > 0 {
			if err := json.Unmarshal(b, &body); err != nil {
				return nil, err
			}
		}
	}
	for k, v := range fields {
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		body[k] = raw
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	return req.SetStream(bytes.NewReader(b))
}

// emptySHA256 is the hex SHA-256 of an empty body, for signing GETs.
var emptySHA256 = func() string {
	sum := sha256.Sum256(nil)
	return hex.EncodeToString(sum[:])
}()

// get sends a signed GET to one of Nimbus's own endpoints (path starts with
// /nimbus/v1/). A response other than 2xx becomes an *apiError.
func (c *client) get(ctx context.Context, path string, query url.Values) (*http.Response, error) {
	u := c.endpoint + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if err := c.sign(req, emptySHA256); err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, readAPIError(resp)
	}
	return resp, nil
}

// readAPIError decodes Lambda's error shape: the type in X-Amzn-ErrorType,
// the message in the JSON body.
func readAPIError(resp *http.Response) error {
	var body struct {
		Type     string `json:"Type"`
		Message  string `json:"message"`
		Message2 string `json:"Message"` // some Lambda errors capitalize it
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_ = json.Unmarshal(b, &body)
	e := &apiError{code: resp.Header.Get("X-Amzn-ErrorType"), msg: body.Message}
	if e.msg == "" {
		e.msg = body.Message2
	}
	if e.code == "" {
		e.code = fmt.Sprintf("HTTP%d", resp.StatusCode)
	}
	if e.msg == "" {
		e.msg = http.StatusText(resp.StatusCode)
	}
	return e
}

// apiError is an error answer from one of Nimbus's own endpoints. It is a
// smithy.APIError, like the SDK's errors.
type apiError struct {
	code, msg string
}

func (e *apiError) Error() string        { return e.code + ": " + e.msg }
func (e *apiError) ErrorCode() string    { return e.code }
func (e *apiError) ErrorMessage() string { return e.msg }

func (e *apiError) ErrorFault() smithy.ErrorFault { return smithy.FaultUnknown }

var _ smithy.APIError = (*apiError)(nil)
