package destination

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-serverless/nimbus"
)

// Webhook headers.
const (
	// HeaderTimestamp carries the delivery time in Unix seconds.
	HeaderTimestamp = "X-Nimbus-Timestamp"
	// HeaderSignature carries "v1=" + hex(HMAC-SHA256(secret, timestamp +
	// "." + body)); absent when the function has no destination secret.
	HeaderSignature = "X-Nimbus-Signature"
	// HeaderDelivery identifies the delivery (request id ":" condition): it
	// is the same on every attempt, so a receiver can drop duplicates.
	HeaderDelivery = "X-Nimbus-Delivery-Id"
)

// ErrSignature is wrapped by Verify's errors.
var ErrSignature = errors.New("invalid webhook signature")

// Sign returns the signature header value of body sent at unix time ts.
func Sign(secret string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(ts, 10)))
	mac.Write([]byte("."))
	mac.Write(body)
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a webhook delivery: the signature header must hold a v1
// signature of body by secret (several, comma-separated, are accepted, for a
// secret being rotated), and when tolerance is positive the timestamp must
// be within tolerance of now. Errors wrap ErrSignature.
func Verify(secret string, header http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	tsText := header.Get(HeaderTimestamp)
	if tsText == "" {
		return fmt.Errorf("%w: no %s header", ErrSignature, HeaderTimestamp)
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s %q is not Unix seconds", ErrSignature, HeaderTimestamp, tsText)
	}
	if skew := now.Sub(time.Unix(ts, 0)).Abs(); tolerance > 0 && skew > tolerance {
		return fmt.Errorf("%w: timestamp %d is %s from now, more than the %s tolerated", ErrSignature, ts, skew.Round(time.Second), tolerance)
	}
	sigs := header.Get(HeaderSignature)
	if sigs == "" {
		return fmt.Errorf("%w: no %s header", ErrSignature, HeaderSignature)
	}
	want := []byte(Sign(secret, ts, body))
	for sig := range strings.SplitSeq(sigs, ",") {
		if hmac.Equal([]byte(strings.TrimSpace(sig)), want) {
			return nil
		}
	}
	return fmt.Errorf("%w: no v1 signature matches the body", ErrSignature)
}

// sendWebhook POSTs body to rawURL until it answers 2xx. 5xx, 429 and
// transport errors are retried; any other answer fails at once.
func (s *Sender) sendWebhook(ctx context.Context, rawURL, secret, id string, body []byte, attrs map[string]string) error {
	where := rawURL
	if u, err := url.Parse(rawURL); err == nil {
		where = u.Redacted()
	}
	var last error
	for attempt := 1; ; attempt++ {
		retryAfter, err := s.post(ctx, rawURL, secret, id, body, attrs)
		if err == nil {
			return nil
		}
		last = err
		var perm *permanentError
		if errors.As(err, &perm) {
			return fmt.Errorf("webhook %s: %w", where, err)
		}
		if attempt >= s.cfg.Attempts {
			return fmt.Errorf("webhook %s: gave up after %s: %w", where, attempts(attempt), last)
		}
		s.log.Debug("webhook delivery failed, retrying", "destination", where, "attempt", attempt, nimbus.LogErr, err)
		if err := wait(ctx, s.backoff(attempt, retryAfter)); err != nil {
			return fmt.Errorf("webhook %s: stopped after %s (%w): %w", where, attempts(attempt), err, last)
		}
	}
}

func attempts(n int) string {
	if n == 1 {
		return "1 attempt"
	}
	return strconv.Itoa(n) + " attempts"
}

// permanentError is an answer not worth retrying.
type permanentError struct{ msg string }

func (e *permanentError) Error() string { return e.msg }

// post makes one attempt. It returns the server's Retry-After, if any.
func (s *Sender) post(ctx context.Context, rawURL, secret, id string, body []byte, attrs map[string]string) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return 0, &permanentError{msg: err.Error()}
	}
	ts := s.cfg.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Nimbus-Destinations/1.0")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderDelivery, id)
	if secret != "" {
		req.Header.Set(HeaderSignature, Sign(secret, ts, body))
	}
	for k, v := range attrs {
		req.Header.Set(attributeHeader(k), v)
	}
	resp, err := s.cfg.HTTP.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which the caller adds redacted
		}
		return 0, err
	}
	defer resp.Body.Close()
	excerpt := readExcerpt(resp.Body)
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return 0, nil
	case code >= 500 || code == http.StatusTooManyRequests:
		return retryAfter(resp.Header), fmt.Errorf("answered %s%s", resp.Status, excerpt)
	default:
		return 0, &permanentError{msg: fmt.Sprintf("answered %s%s (not retried: only 5xx and 429 are)", resp.Status, excerpt)}
	}
}

// readExcerpt reads the start of an answer for an error message, and drains
// a little more so the connection can be reused.
func readExcerpt(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 200))
	_, _ = io.Copy(io.Discard, io.LimitReader(r, 64<<10))
	text := strings.TrimSpace(strings.ToValidUTF8(string(b), "?"))
	text = strings.Join(strings.Fields(text), " ")
	if text == "" {
		return ""
	}
	if len(b) == 200 {
		text += "..."
	}
	return ": " + text
}

func retryAfter(h http.Header) time.Duration {
	secs, err := strconv.Atoi(h.Get("Retry-After"))
	if err != nil || secs <= 0 {
		return 0
	}
	return time.Duration(secs) * time.Second
}

// backoff is the wait after the attempt-th attempt: Backoff doubled for each
// attempt after the first, half of it random, at least the server's
// Retry-After, at most maxBackoff.
func (s *Sender) backoff(attempt int, after time.Duration) time.Duration {
	d := s.cfg.Backoff << min(attempt-1, 20)
	if d <= 0 || d > maxBackoff {
		d = maxBackoff
	}
	d = d/2 + rand.N(d/2+1)
	return min(max(d, after), maxBackoff)
}

// wait sleeps for d unless ctx ends first.
func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// attributeHeader names a delivery attribute's webhook header.
func attributeHeader(attr string) string {
	if h, ok := attributeHeaders[attr]; ok {
		return h
	}
	return "X-Nimbus-" + attr
}

var attributeHeaders = map[string]string{
	"RequestID": "X-Nimbus-Request-Id", "ErrorCode": "X-Nimbus-Error-Code", "ErrorMessage": "X-Nimbus-Error-Message",
}
