package registry

import (
	"context"
	"errors"
	"math"
	"strconv"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/destination"
	"github.com/nimbus-serverless/nimbus/internal/seal"
)

// maxDestinationSecret bounds a destination secret's length in bytes.
const maxDestinationSecret = 1024

// SetEventInvokeConfig replaces the asynchronous invocation configuration
// of a function's qualifier ("" or $LATEST: the function's own; a
// version's number or an alias's name) with what change returns (nil
// removes it). change gets a copy of the current configuration (nil when
// there is none) and may be called more than once, as the write is a
// compare-and-swap loop; it should only compute. The result is validated
// and stamped with LastModified. Flow-control settings are the function's
// queue's: a version's or alias's configuration may not have them.
// Errors: nimbus.ErrNotFound (the function, version or alias),
// nimbus.ErrValidation (a value out of range), nimbus.ErrInvalid (a
// destination, flow control on a qualifier), and change's own.
func (r *Registry) SetEventInvokeConfig(ctx context.Context, name, qualifier string, change func(cur *nimbus.EventInvokeConfig) (*nimbus.EventInvokeConfig, error)) (*nimbus.Function, error) {
	return r.modify(ctx, name, "", func(fn *nimbus.Function) error {
		if !HasQualifier(fn, qualifier) {
			return versionNotFound(name, qualifier)
		}
		var cur *nimbus.EventInvokeConfig
		if c := fn.EventInvokeFor(qualifier); c != nil {
			cur = cloneEventInvoke(c)
		}
		next, err := change(cur)
		if err != nil {
			return err
		}
		if next != nil {
			if err := r.validateEventInvoke(ctx, fn.Name, qualifier, next); err != nil {
				return err
			}
			next.LastModified = r.cfg.Now().UTC()
		}
		setEventInvoke(fn, qualifier, next)
		return nil
	})
}

// setEventInvoke sets (or with nil removes) qualifier q's configuration
// in fn, copying the map it changes.
func setEventInvoke(fn *nimbus.Function, q string, c *nimbus.EventInvokeConfig) {
	switch {
	case q == "" || q == nimbus.Latest:
		fn.EventInvoke = c
	case c == nil:
		fn.EventInvokeQualified = withoutKey(fn.EventInvokeQualified, q)
	default:
		fn.EventInvokeQualified = withKey(fn.EventInvokeQualified, q, c)
	}
}

func cloneEventInvoke(c *nimbus.EventInvokeConfig) *nimbus.EventInvokeConfig {
	out := *c
	if c.MaximumRetryAttempts != nil {
		out.MaximumRetryAttempts = new(*c.MaximumRetryAttempts)
	}
	if c.MaximumEventAgeInSeconds != nil {
		out.MaximumEventAgeInSeconds = new(*c.MaximumEventAgeInSeconds)
	}
	return &out
}

// validateEventInvoke checks c as Lambda does, with Nimbus's wider ranges,
// and checks that destination functions exist and are not the function
// itself.
func (r *Registry) validateEventInvoke(ctx context.Context, name, qualifier string, c *nimbus.EventInvokeConfig) error {
	if err := validateEventInvokeRanges(c); err != nil {
		return err
	}
	if qualifier != "" && qualifier != nimbus.Latest && (c.MaxConcurrency != 0 || c.MaxEventsPerSecond != 0) {
		return nimbus.Invalidf("NimbusMaxConcurrency and NimbusMaxEventsPerSecond are the flow control of the function's asynchronous queue, "+
			"which all its versions and aliases share: set them on the function's own config (no Qualifier, or $LATEST), not on %s:%s", name, qualifier)
	}
	for _, dest := range []string{c.OnSuccess, c.OnFailure} {
		if err := r.validateDestination(ctx, name, dest); err != nil {
			return err
		}
	}
	return nil
}

func validateEventInvokeRanges(c *nimbus.EventInvokeConfig) error {
	if n := c.MaximumRetryAttempts; n != nil && (*n < 0 || *n > nimbus.MaxRetryAttempts) {
		return validationf("maximumRetryAttempts", *n, rangeConstraint(*n, 0, nimbus.MaxRetryAttempts))
	}
	if n := c.MaximumEventAgeInSeconds; n != nil && (*n < nimbus.MinEventAgeSeconds || *n > nimbus.MaxEventAgeSeconds) {
		return validationf("maximumEventAgeInSeconds", *n, rangeConstraint(*n, nimbus.MinEventAgeSeconds, nimbus.MaxEventAgeSeconds))
	}
	if c.MaxConcurrency < 0 {
		return validationf("nimbusMaxConcurrency", c.MaxConcurrency, "Member must have value greater than or equal to 0")
	}
	if r := c.MaxEventsPerSecond; r < 0 || math.IsNaN(r) || math.IsInf(r, 0) {
		return validationf("nimbusMaxEventsPerSecond", r, "Member must be a number greater than or equal to 0")
	}
	if len(c.DestinationSecret) > maxDestinationSecret {
		// The value is a secret: the message does not repeat it.
		return nimbus.Errorf(nimbus.ErrValidation,
			"1 validation error detected: Value at 'nimbusDestinationSecret' failed to satisfy constraint: Member must have length less than or equal to %d", maxDestinationSecret)
	}
	if seal.Sealed(c.DestinationSecret) { // how stored secrets begin (seal.go)
		return nimbus.Errorf(nimbus.ErrValidation,
			"1 validation error detected: Value at 'nimbusDestinationSecret' failed to satisfy constraint: Member must not begin with %q", seal.Prefix)
	}
	return nil
}

func rangeConstraint(n, lo, hi int) string {
	if n < lo {
		return "Member must have value greater than or equal to " + strconv.Itoa(lo)
	}
	return "Member must have value less than or equal to " + strconv.Itoa(hi)
}

// validateDestination parses dest (any region and account: the API checks
// those) and checks that a function destination exists and is another
// function.
func (r *Registry) validateDestination(ctx context.Context, name, dest string) error {
	if dest == "" {
		return nil
	}
	t, err := destination.Parse(dest, "", "")
	if err != nil || t.Kind != destination.Function {
		return err
	}
	if t.Name == name {
		return nimbus.Invalidf("You can't specify the function as a destination for itself.")
	}
	if _, err := r.Get(ctx, t.Name); errors.Is(err, nimbus.ErrNotFound) {
		return nimbus.Invalidf("The destination %s is invalid: function %s does not exist.", dest, t.Name)
	} else if err != nil {
		return err
	}
	return nil
}
