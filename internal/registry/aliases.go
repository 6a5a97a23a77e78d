package registry

import (
	"context"
	"slices"
	"strconv"

	"github.com/google/uuid"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/lazyre"
)

// aliasName is Lambda's alias name pattern: not all digits (a version).
var aliasName = lazyre.New(`^[a-zA-Z0-9_-]{1,128}$`)

// AliasInput is what CreateAlias and UpdateAlias set: fields left nil
// are kept (UpdateAlias).
type AliasInput struct {
	FunctionVersion *string
	Description     *string
	// Weights is RoutingConfig.AdditionalVersionWeights (nil: kept; an
	// empty map: no routing).
	Weights map[string]float64
	// RevisionID, when set, must be the alias's (UpdateAlias).
	RevisionID string
}

// CreateAlias adds an alias to function name. Errors: nimbus.ErrNotFound,
// nimbus.ErrValidation, nimbus.ErrInvalid, nimbus.ErrConflict (it exists).
func (r *Registry) CreateAlias(ctx context.Context, name, alias string, in AliasInput) (*nimbus.Alias, error) {
	if err := validAliasName(alias); err != nil {
		return nil, err
	}
	if in.FunctionVersion == nil {
		return nil, validationf("functionVersion", nil, "Member must not be null")
	}
	var out nimbus.Alias
	_, err := r.modify(ctx, name, "", func(fn *nimbus.Function) error {
		if findAlias(fn, alias) != nil {
			return nimbus.Errorf(nimbus.ErrConflict, "Alias already exists: %s", alias)
		}
		now := r.cfg.Now().UTC()
		a := nimbus.Alias{Name: alias, Created: now, LastModified: now}
		if err := applyAlias(fn, &a, in); err != nil {
			return err
		}
		fn.Aliases = append(slices.Clone(fn.Aliases), a)
		out = a
		return nil
	})
	return &out, err
}

// UpdateAlias changes an alias. Errors: nimbus.ErrNotFound,
// nimbus.ErrValidation, nimbus.ErrInvalid, nimbus.ErrPreconditionFailed.
func (r *Registry) UpdateAlias(ctx context.Context, name, alias string, in AliasInput) (*nimbus.Alias, error) {
	var out nimbus.Alias
	_, err := r.modify(ctx, name, "", func(fn *nimbus.Function) error {
		fn.Aliases = slices.Clone(fn.Aliases)
		a := findAlias(fn, alias)
		if a == nil {
			return aliasNotFound(name, alias)
		}
		if in.RevisionID != "" && in.RevisionID != a.RevisionID {
			return staleRevision()
		}
		if err := applyAlias(fn, a, in); err != nil {
			return err
		}
		a.LastModified = r.cfg.Now().UTC()
		out = *a
		return nil
	})
	return &out, err
}

// DeleteAlias removes an alias, and its function URL with it, as Lambda
// does; the other triggers that invoke the alias stay, and fail their
// messages until it is made again. Errors: nimbus.ErrNotFound.
func (r *Registry) DeleteAlias(ctx context.Context, name, alias string) error {
	_, err := r.modify(ctx, name, "", func(fn *nimbus.Function) error {
		i := slices.IndexFunc(fn.Aliases, func(a nimbus.Alias) bool { return a.Name == alias })
		if i < 0 {
			return aliasNotFound(name, alias)
		}
		fn.Aliases = slices.Delete(slices.Clone(fn.Aliases), i, i+1)
		dropQualifier(fn, alias)
		fn.Triggers = slices.DeleteFunc(slices.Clone(fn.Triggers), func(t nimbus.Trigger) bool {
			return t.Type == nimbus.TriggerHTTP && t.Qualifier == alias
		})
		return nil
	})
	return err
}

// Alias returns an alias of function name. Errors: nimbus.ErrNotFound.
func (r *Registry) Alias(ctx context.Context, name, alias string) (*nimbus.Alias, error) {
	fn, err := r.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	a := findAlias(fn, alias)
	if a == nil {
		return nil, aliasNotFound(name, alias)
	}
	c := *a
	return &c, nil
}

func aliasNotFound(name, alias string) error {
	return nimbus.Errorf(nimbus.ErrNotFound, "Alias not found: %s:%s", name, alias)
}

// ValidAliasName reports whether alias is a valid alias name: Lambda's
// pattern, and not a number (a version).
func ValidAliasName(alias string) bool { return validAliasName(alias) == nil }

func validAliasName(alias string) error {
	if !aliasName().MatchString(alias) {
		return validationf("name", alias, "Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)")
	}
	if _, err := strconv.Atoi(alias); err == nil {
		return validationf("name", alias, "Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)")
	}
	return nil
}

// applyAlias sets in's fields on a, checking the versions it names
// against fn's.
func applyAlias(fn *nimbus.Function, a *nimbus.Alias, in AliasInput) error {
	if in.FunctionVersion != nil {
		a.FunctionVersion = *in.FunctionVersion
	}
	if in.Description != nil {
		if len(*in.Description) > 256 {
			return validationf("description", *in.Description, "Member must have length less than or equal to 256")
		}
		a.Description = *in.Description
	}
	if in.Weights != nil {
		a.Weights = in.Weights
		if len(a.Weights) == 0 {
			a.Weights = nil
		}
	}
	if a.FunctionVersion != nimbus.Latest && !hasVersion(fn, a.FunctionVersion) {
		return nimbus.Errorf(nimbus.ErrNotFound, "Function not found: %s:%s", fn.Name, a.FunctionVersion)
	}
	if len(a.Weights) > 1 {
		return nimbus.Invalidf("Number of items in AdditionalVersionWeights cannot be greater than 1")
	}
	for v, w := range a.Weights {
		switch {
		case a.FunctionVersion == nimbus.Latest || v == nimbus.Latest:
			return nimbus.Invalidf("$LATEST is not supported for an alias pointing to more than 1 version")
		case v == a.FunctionVersion:
			return nimbus.Invalidf("Alias %s cannot route to version %s twice: its AdditionalVersionWeights must name another version", a.Name, v)
		case !hasVersion(fn, v):
			return nimbus.Errorf(nimbus.ErrNotFound, "Function not found: %s:%s", fn.Name, v)
		case !(w >= 0 && w <= 1):
			return validationf("additionalVersionWeights", w, "Member must have value between 0.0 and 1.0")
		}
	}
	a.RevisionID = uuid.NewString()
	return nil
}

func hasVersion(fn *nimbus.Function, q string) bool {
	n, err := strconv.Atoi(q)
	return err == nil && slices.ContainsFunc(fn.Versions, func(v nimbus.VersionRef) bool { return v.Number == n })
}
