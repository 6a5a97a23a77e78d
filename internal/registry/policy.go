package registry

import (
	"context"
	"slices"
	"strconv"

	"github.com/google/uuid"

	"github.com/nimbus-serverless/nimbus"
)

// Resource-based policies: the unqualified function's (Function.Policy)
// and each version's and alias's (Function.PolicyQualified), all on the
// function's record. A version's or alias's goes with it, and all go with
// the function.

// AddPermission adds a statement to the policy of a function's qualifier
// ("" or $LATEST: the unqualified function's; a version's number or an
// alias's name); a non-empty revisionID must be the qualifier's
// (PolicyRevision). The qualifier gets a new RevisionID, as in Lambda: the
// function or the alias; a version's snapshot, immutable, keeps its own.
// st is checked by the caller. Errors: nimbus.ErrNotFound (the function,
// version or alias), nimbus.ErrConflict (the Sid exists),
// nimbus.ErrPreconditionFailed, and check's own (the policy with st
// added, e.g. too large).
func (r *Registry) AddPermission(ctx context.Context, name, qualifier string, st nimbus.PolicyStatement, revisionID string, check func([]nimbus.PolicyStatement) error) (*nimbus.Function, error) {
	return r.changePolicy(ctx, name, qualifier, revisionID, func(cur []nimbus.PolicyStatement) ([]nimbus.PolicyStatement, error) {
		if slices.ContainsFunc(cur, func(s nimbus.PolicyStatement) bool { return s.Sid == st.Sid }) {
			return nil, nimbus.Errorf(nimbus.ErrConflict, "The statement id (%s) provided already exists. Please provide a new statement id, or remove the existing statement.", st.Sid)
		}
		next := append(slices.Clone(cur), st)
		if check != nil {
			if err := check(next); err != nil {
				return nil, err
			}
		}
		return next, nil
	})
}

// RemovePermission removes the statement sid from the policy of a
// function's qualifier, as AddPermission names it; a non-empty revisionID
// must be the qualifier's. Errors: nimbus.ErrNotFound (the function,
// version, alias or statement), nimbus.ErrPreconditionFailed.
func (r *Registry) RemovePermission(ctx context.Context, name, qualifier, sid, revisionID string) (*nimbus.Function, error) {
	return r.changePolicy(ctx, name, qualifier, revisionID, func(cur []nimbus.PolicyStatement) ([]nimbus.PolicyStatement, error) {
		i := slices.IndexFunc(cur, func(s nimbus.PolicyStatement) bool { return s.Sid == sid })
		if i < 0 {
			return nil, nimbus.Errorf(nimbus.ErrNotFound, "Statement %s is not found in resource policy.", sid)
		}
		return slices.Delete(slices.Clone(cur), i, i+1), nil
	})
}

// PolicyRevision is the RevisionId that goes with the policy of fn's
// qualifier q (GetPolicy's, and what AddPermission's and
// RemovePermission's RevisionId must match): the function's for "" or
// $LATEST, the alias's for an alias, the version's for a version. Errors:
// nimbus.ErrNotFound (no such version or alias).
func (r *Registry) PolicyRevision(ctx context.Context, fn *nimbus.Function, q string) (string, error) {
	if !HasQualifier(fn, q) {
		return "", versionNotFound(fn.Name, q)
	}
	if q == "" || q == nimbus.Latest {
		return fn.RevisionID, nil
	}
	if a := findAlias(fn, q); a != nil {
		return a.RevisionID, nil
	}
	n, _ := strconv.Atoi(q) // HasQualifier: a version's number
	v, err := r.Version(ctx, fn.Name, n)
	if err != nil {
		return "", err
	}
	return v.RevisionID, nil
}

// changePolicy replaces the policy of qualifier q of function name with
// what change returns (change gets the current one, and may be called more
// than once); a non-empty revisionID must be q's.
func (r *Registry) changePolicy(ctx context.Context, name, q, revisionID string, change func([]nimbus.PolicyStatement) ([]nimbus.PolicyStatement, error)) (*nimbus.Function, error) {
	if q == "" || q == nimbus.Latest {
		return r.modify(ctx, name, revisionID, func(fn *nimbus.Function) error {
			next, err := change(fn.Policy)
			if err == nil {
				fn.Policy = next
				if len(fn.Policy) == 0 {
					fn.Policy = nil
				}
			}
			return err
		})
	}
	return r.modify(ctx, name, "", func(fn *nimbus.Function) error {
		rev, err := r.PolicyRevision(ctx, fn, q)
		if err != nil {
			return err
		}
		if revisionID != "" && revisionID != rev {
			return staleRevision()
		}
		next, err := change(fn.PolicyQualified[q])
		if err != nil {
			return err
		}
		if len(next) == 0 {
			fn.PolicyQualified = withoutKey(fn.PolicyQualified, q)
		} else {
			fn.PolicyQualified = withKey(fn.PolicyQualified, q, next)
		}
		if findAlias(fn, q) != nil {
			fn.Aliases = slices.Clone(fn.Aliases)
			findAlias(fn, q).RevisionID = uuid.NewString()
		}
		return errKeepRevision // the function's own RevisionId is $LATEST's
	})
}
