package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"gopkg.in/yaml.v3"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/registry"
)

// published names, in a manifest's aliases, the version the deploy
// publishes (publish: true).
const published = "published"

// aliasSpec is an alias a manifest declares: the version it points at
// (a number, $LATEST or "published") and, optionally, a second version
// with a share of its requests (Weight, "VERSION=SHARE").
type aliasSpec struct {
	Version string `yaml:"version"`
	Weight  string `yaml:"weight"`
}

// UnmarshalYAML takes `live: 3` as well as `live: {version: 3, weight: 4=0.1}`.
func (a *aliasSpec) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		a.Version = n.Value
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return typeErrorf("line %d: an alias is a version (live: 3) or {version: 3, weight: 4=0.1}", n.Line)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if v.Kind != yaml.ScalarNode {
			return typeErrorf("line %d: alias field %s must be a scalar", v.Line, k.Value)
		}
		switch k.Value {
		case "version":
			a.Version = v.Value
		case "weight":
			a.Weight = v.Value
		default:
			return typeErrorf("line %d: an alias has the fields version and weight, not %q", k.Line, k.Value)
		}
	}
	return nil
}

// versionProblems checks publish, aliases and layers.
func (s *functionSpec) versionProblems() []error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(s.Aliases)) {
		a := s.Aliases[name]
		if !registry.ValidAliasName(name) {
			errs = append(errs, fmt.Errorf("alias %q: a name is 1 to 128 letters, digits, - or _, and not a number", name))
		}
		switch v := a.Version; {
		case v == published && !s.Publish:
			errs = append(errs, fmt.Errorf("alias %s: version published needs publish: true", name))
		case v == published, v == nimbus.Latest:
		default:
			if n, err := strconv.Atoi(v); err != nil || n < 1 {
				errs = append(errs, fmt.Errorf("alias %s: version must be a version's number, $LATEST or published, not %q", name, v))
			}
		}
		if a.Weight != "" {
			if _, err := parseWeight(a.Weight); err != nil {
				errs = append(errs, fmt.Errorf("alias %s: %w", name, errors.New(strings.Replace(err.Error(), "--weight", "weight", 1))))
			}
		}
	}
	if s.Layers != nil && len(*s.Layers) > 5 {
		errs = append(errs, fmt.Errorf("layers: at most 5, not %d", len(*s.Layers)))
	}
	return errs
}

// publishAndAlias publishes a version when the spec asks, then points
// its aliases.
func publishAndAlias(ctx context.Context, c *client, s *functionSpec, progress io.Writer) error {
	version := ""
	if s.Publish {
		out, err := c.lambda.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String(s.Name)})
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		version = aws.ToString(out.Version)
		if progress != nil {
			fmt.Fprintf(progress, "Published version %s of %s.\n", version, s.Name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.Aliases)) {
		a := s.Aliases[name]
		target := a.Version
		if target == published {
			target = version
		}
		weights, err := parseWeight(a.Weight)
		if err != nil {
			return err
		}
		v, err := setAlias(ctx, c, s.Name, name, target, weights, nil)
		if err != nil {
			return fmt.Errorf("alias %s: %w", name, err)
		}
		if progress != nil {
			fmt.Fprintf(progress, "Alias %s of %s: %s\n", name, s.Name, v.routing())
		}
	}
	return nil
}

// setAlias points alias of function name at version (with weights),
// creating it when it does not exist.
func setAlias(ctx context.Context, c *client, name, alias, version string, weights map[string]float64, desc *string) (aliasView, error) {
	routing := &types.AliasRoutingConfiguration{AdditionalVersionWeights: weights}
	up, err := c.lambda.UpdateAlias(ctx, &lambda.UpdateAliasInput{FunctionName: aws.String(name), Name: aws.String(alias),
		FunctionVersion: aws.String(version), RoutingConfig: routing, Description: desc})
	var nf *types.ResourceNotFoundException
	switch {
	case err == nil:
		return viewAlias(&types.AliasConfiguration{Name: up.Name, FunctionVersion: up.FunctionVersion, Description: up.Description,
			RoutingConfig: up.RoutingConfig, AliasArn: up.AliasArn}), nil
	case errors.As(err, &nf) && strings.Contains(nf.ErrorMessage(), "Alias not found"):
		cr, err := c.lambda.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String(name), Name: aws.String(alias),
			FunctionVersion: aws.String(version), RoutingConfig: routing, Description: desc})
		if err != nil {
			return aliasView{}, err
		}
		return viewAlias(&types.AliasConfiguration{Name: cr.Name, FunctionVersion: cr.FunctionVersion, Description: cr.Description,
			RoutingConfig: cr.RoutingConfig, AliasArn: cr.AliasArn}), nil
	}
	return aliasView{}, err
}

// layers is the Layers an update sends: the spec's, or nil (left alone).
func (s *functionSpec) layers() []string {
	if s.Layers == nil {
		return nil
	}
	if len(*s.Layers) == 0 {
		return []string{} // declared empty: no layers
	}
	return *s.Layers
}
