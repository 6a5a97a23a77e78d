package api_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// publishWithAlias creates function name (by c), publishes version 1 and
// points aliases at it.
func publishWithAlias(t *testing.T, c *lambda.Client, name string, aliases ...string) {
	t.Helper()
	ctx := t.Context()
	createPy(t, c, name, pyZip(t))
	waitActive(t, c, name)
	if _, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String(name)}); err != nil {
		t.Fatal(err)
	}
	for _, a := range aliases {
		if _, err := c.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String(name), Name: aws.String(a), FunctionVersion: aws.String("1")}); err != nil {
			t.Fatal(err)
		}
	}
}

// policyOf is the Sids and Resources of the policy GetPolicy answers for
// name (with qualifier q unless ""), and its RevisionId.
func policyOf(t *testing.T, c *lambda.Client, name, q string) (sids, resources []string, rev string, err error) {
	t.Helper()
	in := &lambda.GetPolicyInput{FunctionName: aws.String(name)}
	if q != "" {
		in.Qualifier = aws.String(q)
	}
	out, err := c.GetPolicy(t.Context(), in)
	if err != nil {
		return nil, nil, "", err
	}
	var doc policyDoc
	if err := json.Unmarshal([]byte(aws.ToString(out.Policy)), &doc); err != nil {
		t.Fatalf("Policy %s: %v", aws.ToString(out.Policy), err)
	}
	for _, st := range doc.Statement {
		sids = append(sids, st["Sid"].(string))
		resources = append(resources, st["Resource"].(string))
	}
	return sids, resources, aws.ToString(out.RevisionId), nil
}

// TestPolicyQualifiers: the function ($LATEST), version 1 and alias live
// have policies of their own, their statements on the qualified ARN; the
// RevisionId of each is its own (an alias's changes with its policy, the
// function's does not); Lambda's errors for qualifiers that are missing,
// malformed or disagree; deleting an alias, a version or the function
// deletes their policies.
func TestPolicyQualifiers(t *testing.T) {
	clients, _ := extServer(t)
	dev, ctx := clients(extDevA), t.Context()
	const name = "team-a-qpol"
	publishWithAlias(t, dev, name, "live", "idle")
	fnRev := revisionOf(t, dev, name)
	live, err := dev.GetAlias(ctx, &lambda.GetAliasInput{FunctionName: aws.String(name), Name: aws.String("live")})
	if err != nil {
		t.Fatal(err)
	}
	v1, err := dev.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(name), Qualifier: aws.String("1")})
	if err != nil {
		t.Fatal(err)
	}
	add := func(fn, q, sid, rev string) (*lambda.AddPermissionOutput, error) {
		in := &lambda.AddPermissionInput{FunctionName: aws.String(fn), StatementId: aws.String(sid),
			Action: aws.String("lambda:GetFunction"), Principal: aws.String("111122223333")}
		if q != "" {
			in.Qualifier = aws.String(q)
		}
		if rev != "" {
			in.RevisionId = aws.String(rev)
		}
		return dev.AddPermission(ctx, in)
	}

	// A stale RevisionId: each qualifier's is its own.
	for _, tt := range []struct{ q, rev string }{{"live", fnRev}, {"1", fnRev}, {"", aws.ToString(live.RevisionId)}} {
		_, err := add(name, tt.q, "stale", tt.rev)
		wantAPIError(t, err, "PreconditionFailedException", "Revision Id")
	}
	out, err := add(name, "live", "a", aws.ToString(live.RevisionId))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(aws.ToString(out.Statement), `"Resource":"`+extARN+name+`:live"`) {
		t.Errorf("live's Statement %s, want its Resource the alias's ARN", aws.ToString(out.Statement))
	}
	for _, p := range []struct{ fn, q, sid, rev string }{
		{name, "1", "a", aws.ToString(v1.RevisionId)}, // the same Sid: another policy
		{extARN + name + ":1", "", "b", ""},           // the qualified ARN
		{name + ":live", "live", "b", ""},             // name:qualifier and Qualifier agreeing
		{name, "", "a", fnRev},
	} {
		if _, err := add(p.fn, p.q, p.sid, p.rev); err != nil {
			t.Fatalf("AddPermission %s qualifier %q Sid %s: %v", p.fn, p.q, p.sid, err)
		}
	}
	liveNow, err := dev.GetAlias(ctx, &lambda.GetAliasInput{FunctionName: aws.String(name), Name: aws.String("live")})
	if err != nil || aws.ToString(liveNow.RevisionId) == aws.ToString(live.RevisionId) {
		t.Errorf("alias live's RevisionId %s (%v), want a new one after its permissions", aws.ToString(liveNow.RevisionId), err)
	}
	fnNow := revisionOf(t, dev, name)
	if fnNow == fnRev {
		t.Errorf("the function's RevisionId is unchanged after its own permission")
	}
	for _, w := range []struct {
		fn, q, resource, rev string
		sids                 string
	}{
		{name, "", extARN + name, fnNow, "a"},
		{name, "$LATEST", extARN + name, fnNow, "a"},
		{name, "1", extARN + name + ":1", aws.ToString(v1.RevisionId), "a b"},
		{name, "live", extARN + name + ":live", aws.ToString(liveNow.RevisionId), "a b"},
		{name + ":live", "", extARN + name + ":live", aws.ToString(liveNow.RevisionId), "a b"},
	} {
		sids, resources, rev, err := policyOf(t, dev, w.fn, w.q)
		if err != nil || strings.Join(sids, " ") != w.sids || rev != w.rev {
			t.Errorf("GetPolicy %s qualifier %q: Sids %v RevisionId %s (%v), want %s and %s", w.fn, w.q, sids, rev, err, w.sids, w.rev)
		}
		for _, r := range resources {
			if r != w.resource {
				t.Errorf("GetPolicy %s qualifier %q: Resource %s, want %s", w.fn, w.q, r, w.resource)
			}
		}
	}

	// Bad qualifiers, on each operation.
	notFound := "Function not found: " + extARN + name
	for _, tt := range []struct {
		fn, q, typ, msg string
	}{
		{name, "2", "ResourceNotFoundException", notFound + ":2"},
		{name, "nope", "ResourceNotFoundException", notFound + ":nope"},
		{name, "01", "ResourceNotFoundException", notFound + ":01"},
		{name + ":live", "1", "InvalidParameterValueException", "The derived qualifier from the function name does not match the specified qualifier."},
		{name, "no way", "ValidationException", "at 'qualifier'"},
		{"team-a-none:live", "", "ResourceNotFoundException", "Function not found: " + extARN + "team-a-none:live"},
	} {
		var q *string
		if tt.q != "" {
			q = aws.String(tt.q)
		}
		_, err := add(tt.fn, tt.q, "x", "")
		wantAPIError(t, err, tt.typ, tt.msg)
		_, err = dev.GetPolicy(ctx, &lambda.GetPolicyInput{FunctionName: aws.String(tt.fn), Qualifier: q})
		wantAPIError(t, err, tt.typ, tt.msg)
		_, err = dev.RemovePermission(ctx, &lambda.RemovePermissionInput{FunctionName: aws.String(tt.fn), Qualifier: q, StatementId: aws.String("a")})
		wantAPIError(t, err, tt.typ, tt.msg)
	}
	_, err = dev.GetPolicy(ctx, &lambda.GetPolicyInput{FunctionName: aws.String(name), Qualifier: aws.String("idle")})
	wantAPIError(t, err, "ResourceNotFoundException", "The resource you requested does not exist.")
	_, err = dev.RemovePermission(ctx, &lambda.RemovePermissionInput{FunctionName: aws.String(name), Qualifier: aws.String("idle"), StatementId: aws.String("a")})
	wantAPIError(t, err, "ResourceNotFoundException", "Statement a is not found in resource policy.")
	_, err = dev.RemovePermission(ctx, &lambda.RemovePermissionInput{FunctionName: aws.String(name), Qualifier: aws.String("live"),
		StatementId: aws.String("b"), RevisionId: aws.String(fnNow)})
	wantAPIError(t, err, "PreconditionFailedException", "Revision Id")
	_, err = clients(extDevB).AddPermission(ctx, &lambda.AddPermissionInput{FunctionName: aws.String(name + ":live"), StatementId: aws.String("me"),
		Action: aws.String("lambda:InvokeFunction"), Principal: aws.String(extDevB)})
	wantAPIError(t, err, "AccessDeniedException", "dev-b")

	// Removing from live leaves the others.
	if _, err := dev.RemovePermission(ctx, &lambda.RemovePermissionInput{FunctionName: aws.String(name), Qualifier: aws.String("live"),
		StatementId: aws.String("b"), RevisionId: liveNow.RevisionId}); err != nil {
		t.Fatal(err)
	}
	for q, want := range map[string]string{"": "a", "1": "a b", "live": "a"} {
		if sids, _, _, err := policyOf(t, dev, name, q); err != nil || strings.Join(sids, " ") != want {
			t.Errorf("after removing live's b, GetPolicy %q: %v (%v), want %s", q, sids, err, want)
		}
	}

	// An alias's and a version's policies go with them; a new alias of
	// the same name has none.
	if _, err := dev.DeleteAlias(ctx, &lambda.DeleteAliasInput{FunctionName: aws.String(name), Name: aws.String("live")}); err != nil {
		t.Fatal(err)
	}
	_, _, _, err = policyOf(t, dev, name, "live")
	wantAPIError(t, err, "ResourceNotFoundException", notFound+":live")
	if _, err := dev.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String(name), Name: aws.String("live"), FunctionVersion: aws.String("$LATEST")}); err != nil {
		t.Fatal(err)
	}
	_, _, _, err = policyOf(t, dev, name, "live")
	wantAPIError(t, err, "ResourceNotFoundException", "The resource you requested does not exist.")
	if _, err := dev.DeleteAlias(ctx, &lambda.DeleteAliasInput{FunctionName: aws.String(name), Name: aws.String("idle")}); err != nil {
		t.Fatal(err)
	}
	if _, err := dev.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(name), Qualifier: aws.String("1")}); err != nil {
		t.Fatal(err)
	}
	_, _, _, err = policyOf(t, dev, name, "1")
	wantAPIError(t, err, "ResourceNotFoundException", notFound+":1")
	if sids, _, _, err := policyOf(t, dev, name, ""); err != nil || strings.Join(sids, " ") != "a" {
		t.Errorf("the function's policy after deleting its version and alias: %v (%v)", sids, err)
	}

	// The function's go with it: made again, it has none.
	if _, err := add(name, "live", "c", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := dev.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(name)}); err != nil {
		t.Fatal(err)
	}
	publishWithAlias(t, dev, name, "live")
	for _, q := range []string{"", "1", "live"} {
		_, _, _, err = policyOf(t, dev, name, q)
		wantAPIError(t, err, "ResourceNotFoundException", "The resource you requested does not exist.")
	}
}

// TestPolicyQualifierGrantsInvoke: as in Lambda, a permission applies to
// the qualifier it was added on only: the function's to unqualified
// invocations ($LATEST), version 1's to invoking name:1, live's to
// invoking name:live (not the version it points at, nor the function);
// live's function URL takes live's lambda:InvokeFunctionUrl.
func TestPolicyQualifierGrantsInvoke(t *testing.T) {
	clients, _ := extServer(t)
	dev, inv, ctx := clients(extDevA), clients(extInvB), t.Context()
	const name = "team-a-qgrant"
	publishWithAlias(t, dev, name, "live")
	grant := func(q, sid, action string, urlAuth types.FunctionUrlAuthType) {
		t.Helper()
		in := &lambda.AddPermissionInput{FunctionName: aws.String(name), StatementId: aws.String(sid),
			Action: aws.String(action), Principal: aws.String(extInvB), FunctionUrlAuthType: urlAuth}
		if q != "" {
			in.Qualifier = aws.String(q)
		}
		if _, err := dev.AddPermission(ctx, in); err != nil {
			t.Fatalf("AddPermission %s on %q: %v", sid, q, err)
		}
	}
	// invokes reports which of the ways to invoke the function inv-b may use.
	invokes := func() string {
		var ok []string
		for _, w := range []struct{ fn, q, label string }{
			{name, "", "fn"}, {name, "$LATEST", "fn:$LATEST"}, {name, "1", "fn:1"}, {name, "live", "fn:live"},
			{name + ":live", "", "name:live"}, {extARN + name + ":1", "", "arn:1"},
		} {
			in := &lambda.InvokeInput{FunctionName: aws.String(w.fn), Payload: []byte(`{}`)}
			if w.q != "" {
				in.Qualifier = aws.String(w.q)
			}
			_, err := inv.Invoke(ctx, in)
			if err == nil {
				ok = append(ok, w.label)
			} else if !strings.Contains(err.Error(), "AccessDeniedException") {
				t.Errorf("invoke %s: %v", w.label, err)
			}
		}
		return strings.Join(ok, " ")
	}
	for _, step := range []struct {
		q, sid, want string
	}{
		{"", "", ""},
		{"", "fn", "fn fn:$LATEST"},
		{"live", "live", "fn fn:$LATEST fn:live name:live"},
		{"1", "v1", "fn fn:$LATEST fn:1 fn:live name:live arn:1"},
	} {
		if step.sid != "" {
			grant(step.q, step.sid, "lambda:InvokeFunction", "")
		}
		if got := invokes(); got != step.want {
			t.Errorf("after granting %q on %q: inv-b invokes %q, want %q", step.sid, step.q, got, step.want)
		}
	}
	if _, err := dev.RemovePermission(ctx, &lambda.RemovePermissionInput{FunctionName: aws.String(name + ":live"), StatementId: aws.String("live")}); err != nil {
		t.Fatal(err)
	}
	if got, want := invokes(), "fn fn:$LATEST fn:1 arn:1"; got != want {
		t.Errorf("after removing live's: inv-b invokes %q, want %q", got, want)
	}

	// live's AWS_IAM function URL: the function's InvokeFunctionUrl does
	// not grant it, live's does.
	cfg, err := dev.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String(name),
		Qualifier: aws.String("live"), AuthType: types.FunctionUrlAuthTypeAwsIam})
	if err != nil {
		t.Fatal(err)
	}
	u := aws.ToString(cfg.FunctionUrl)
	call := func() int {
		code, _ := signedCall(t, u, extInvB, "POST", "", `{}`)
		return code
	}
	if code := call(); code != 403 {
		t.Errorf("live's URL by inv-b, granted InvokeFunction: %d, want 403", code)
	}
	grant("", "fn-url", "lambda:InvokeFunctionUrl", types.FunctionUrlAuthTypeAwsIam)
	if code := call(); code != 403 {
		t.Errorf("live's URL by inv-b, granted the function's InvokeFunctionUrl: %d, want 403", code)
	}
	grant("live", "live-url", "lambda:InvokeFunctionUrl", types.FunctionUrlAuthTypeAwsIam)
	if code := call(); code != 200 {
		t.Errorf("live's URL by inv-b, granted live's InvokeFunctionUrl: %d, want 200", code)
	}
}
