package registry

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/lazyre"
)

// Lambda's tag limits.
const (
	MaxTags        = 50
	maxTagKeyLen   = 128
	maxTagValueLen = 256
)

// tagRE is the characters AWS allows in tag keys and values.
var tagRE = lazyre.New(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`)

// errKeepRevision is what a change given to modify returns to be written
// without a new RevisionID: it changes nothing of the configuration.
var errKeepRevision = errors.New("keep the revision")

// ValidateTags checks tags as Lambda does: at most MaxTags, keys of 1 to
// 128 characters not starting with aws: (reserved), values of at most 256.
// Errors: nimbus.ErrValidation, nimbus.ErrInvalid.
func ValidateTags(tags map[string]string) error {
	if len(tags) > MaxTags {
		return nimbus.Invalidf("Number of tags exceeds resource tag limit: a function may have at most %d tags, not %d", MaxTags, len(tags))
	}
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		v := tags[k]
		switch n := utf8.RuneCountInString(k); {
		case n < 1 || n > maxTagKeyLen:
			return validationf("tags", k, "Map keys must have length less than or equal to 128 and greater than or equal to 1")
		case strings.HasPrefix(strings.ToLower(k), "aws:"):
			return nimbus.Invalidf("Tag key %q is not allowed: keys starting with aws: are reserved for AWS use", k)
		case !tagRE().MatchString(k):
			return validationf("tags", k, `Map keys must satisfy regular expression pattern: ^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`)
		case utf8.RuneCountInString(v) > maxTagValueLen:
			return validationf("tags", k, "Map values must have length less than or equal to 256")
		case !tagRE().MatchString(v):
			return validationf("tags", k, `Map values must satisfy regular expression pattern: ^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`)
		}
	}
	return nil
}

// applyTags sets a new function's tags (CreateFunction's Tags).
func (in FunctionInput) applyTags(fn *nimbus.Function) error {
	if in.Tags == nil {
		return nil
	}
	if err := ValidateTags(in.Tags); err != nil {
		return err
	}
	fn.Tags = maps.Clone(in.Tags)
	return nil
}

// Tag adds tags to a function, replacing the values of keys it has, and
// removes the keys of untag; the result is checked as a whole (at most
// MaxTags). The function keeps its RevisionID, as in Lambda, where tags are
// not part of a function's configuration. Errors: nimbus.ErrNotFound,
// nimbus.ErrValidation, nimbus.ErrInvalid.
func (r *Registry) Tag(ctx context.Context, name string, tags map[string]string, untag []string) (*nimbus.Function, error) {
	return r.modify(ctx, name, "", func(fn *nimbus.Function) error {
		next := maps.Clone(fn.Tags)
		if next == nil {
			next = make(map[string]string, len(tags))
		}
		maps.Copy(next, tags)
		for _, k := range untag {
			delete(next, k)
		}
		if err := ValidateTags(next); err != nil {
			return err
		}
		if len(next) == 0 {
			next = nil
		}
		fn.Tags = next
		return errKeepRevision
	})
}

// SetRecursiveLoop sets a function's recursion config:
// nimbus.RecursiveLoopTerminate or nimbus.RecursiveLoopAllow. Errors:
// nimbus.ErrNotFound, nimbus.ErrValidation.
func (r *Registry) SetRecursiveLoop(ctx context.Context, name, loop string) (*nimbus.Function, error) {
	if loop != nimbus.RecursiveLoopTerminate && loop != nimbus.RecursiveLoopAllow {
		return nil, validationf("recursiveLoop", loop, "Member must satisfy enum value set: [Terminate, Allow]")
	}
	return r.modify(ctx, name, "", func(fn *nimbus.Function) error {
		fn.RecursiveLoop = loop
		if loop == nimbus.RecursiveLoopTerminate {
			fn.RecursiveLoop = ""
		}
		return nil
	})
}

// SetUpdateRuntimeOn sets a function's runtime management config:
// nimbus.UpdateRuntimeAuto or nimbus.UpdateRuntimeOnFunctionUpdate (Manual
// needs a runtime version, which the caller refuses). Errors:
// nimbus.ErrNotFound, nimbus.ErrValidation.
func (r *Registry) SetUpdateRuntimeOn(ctx context.Context, name, on string) (*nimbus.Function, error) {
	if on != nimbus.UpdateRuntimeAuto && on != nimbus.UpdateRuntimeOnFunctionUpdate {
		return nil, validationf("updateRuntimeOn", on, "Member must satisfy enum value set: [Auto, FunctionUpdate]")
	}
	return r.modify(ctx, name, "", func(fn *nimbus.Function) error {
		fn.UpdateRuntimeOn = on
		if on == nimbus.UpdateRuntimeAuto {
			fn.UpdateRuntimeOn = ""
		}
		return nil
	})
}
