package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/nimbus-serverless/nimbus"
	s3trigger "github.com/nimbus-serverless/nimbus/internal/trigger/s3"
)

// S3Receiver takes the S3 bucket event notifications of object-storage
// triggers (implemented by *s3trigger.Receiver).
type S3Receiver interface {
	// Receive delivers a notification body to a function's trigger and
	// returns once it was accepted. Errors: nimbus.ErrNotFound,
	// nimbus.ErrForbidden, nimbus.ErrMalformed; any other error is a
	// failed delivery (5xx, so the store sends it again).
	Receive(ctx context.Context, function, trigger, secret string, body []byte) (s3trigger.Result, error)
}

// maxS3Notification caps a notification body.
const maxS3Notification = 1 << 20

// s3Routes receives S3 bucket event notifications for object-storage
// triggers. The route skips the API's SigV4 verification: object stores cannot
// sign webhooks, so a trigger protects itself with its own secret.
func (s *Server) s3Routes() {
	s.mux.HandleFunc("POST /nimbus/v1/s3-events/{function}/{trigger}", func(w http.ResponseWriter, r *http.Request) {
		res, err := s.s3Receive(w, r)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		_ = writeJSON(w, http.StatusOK, res)
	})
}

func (s *Server) s3Receive(w http.ResponseWriter, r *http.Request) (s3trigger.Result, error) {
	if s.cfg.S3 == nil {
		return s3trigger.Result{}, nimbus.Errorf(nimbus.ErrNotFound, "Object-storage triggers are not enabled on this node")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxS3Notification))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return s3trigger.Result{}, newError(http.StatusRequestEntityTooLarge, errTooLarge,
				"An S3 event notification must be smaller than "+itoa(maxS3Notification)+" bytes")
		}
		return s3trigger.Result{}, newError(http.StatusBadRequest, errInvalidContent, "Could not read the request body: "+err.Error())
	}
	if len(body) == 0 {
		return s3trigger.Result{}, newError(http.StatusBadRequest, errInvalidContent, "The request body is empty: an S3 event notification is expected")
	}
	return s.cfg.S3.Receive(r.Context(), r.PathValue("function"), r.PathValue("trigger"), s3Secret(r), body)
}

// s3Secret is the secret a notification carries: the query parameter
// "secret", "Authorization: Bearer <secret>" (MinIO's auth_token) or the
// header X-Nimbus-Secret.
func s3Secret(r *http.Request) string {
	if v := r.URL.Query().Get("secret"); v != "" {
		return v
	}
	if v := r.Header.Get("Authorization"); v != "" {
		if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
			return strings.TrimSpace(v[7:])
		}
		return v
	}
	return r.Header.Get("X-Nimbus-Secret")
}
