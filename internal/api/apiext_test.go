package api_test

import (
	"encoding/json"
	"maps"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/nimbus-serverless/nimbus/internal/api"
	"github.com/nimbus-serverless/nimbus/internal/audit"
	auditmem "github.com/nimbus-serverless/nimbus/internal/audit/mem"
	"github.com/nimbus-serverless/nimbus/internal/auth"
	"github.com/nimbus-serverless/nimbus/internal/codepkg"
	"github.com/nimbus-serverless/nimbus/internal/sdkhttp"
)

// The keys of the tags, policy and settings tests, with ids shaped as
// Nimbus issues them (the secret is secretOf(id)).
const (
	extAdmin = "NIMBADMIN00000000000"
	extDevA  = "NIMBDEVA000000000000"
	extDevB  = "NIMBDEVB000000000000"
	extInvB  = "NIMBINVB000000000000"
)

var extKeys = map[string]auth.Principal{
	extAdmin: {Name: "admin", AccessKeyID: extAdmin, Role: auth.Admin, Functions: "*"},
	extDevA:  {Name: "dev-a", AccessKeyID: extDevA, Role: auth.Developer, Functions: "team-a-*"},
	extDevB:  {Name: "dev-b", AccessKeyID: extDevB, Role: auth.Developer, Functions: "team-b-*"},
	extInvB:  {Name: "inv-b", AccessKeyID: extInvB, Role: auth.Invoker, Functions: "team-b-*"},
}

// extServer is an API server with authentication on over an in-memory
// store, keeping its audit trail in the returned log; clients returns an
// aws-sdk-go-v2 client signing with a key of extKeys.
func extServer(t *testing.T) (clients func(id string) *lambda.Client, log audit.Log) {
	t.Helper()
	reg, _ := memRegistry(t, t.TempDir(), codepkg.DefaultLimits(), "python3.11")
	v := &auth.Verifier{Region: "us-east-1", Service: "lambda", MaxBody: 8 << 20, Secrets: func(id string) (string, auth.Principal, bool) {
		p, ok := extKeys[id]
		return secretOf(id), p, ok
	}}
	log = auditmem.New()
	srv := httptest.NewServer(api.New(api.Config{Registry: reg, Invoker: echoInvoker{}, Verifier: v, Audit: log}))
	t.Cleanup(srv.Close)
	return func(id string) *lambda.Client {
		return lambda.New(lambda.Options{
			HTTPClient:   sdkhttp.Client(),
			BaseEndpoint: aws.String(srv.URL), Region: "us-east-1",
			Credentials: credentials.NewStaticCredentialsProvider(id, secretOf(id), ""),
			// Errors are answers here, not something to retry.
			RetryMaxAttempts: 1,
		})
	}, log
}

const extARN = "arn:aws:lambda:us-east-1:000000000000:function:"

func revisionOf(t *testing.T, c *lambda.Client, name string) string {
	t.Helper()
	out, err := c.GetFunction(t.Context(), &lambda.GetFunctionInput{FunctionName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.Configuration.RevisionId)
}

// TestTags: Tags on CreateFunction are in GetFunction; TagResource adds and
// replaces, UntagResource removes, ListTags lists, none of them changing
// the RevisionId; Lambda's limits and errors; a key of another team can
// neither read nor change them; changes are in the audit trail.
func TestTags(t *testing.T) {
	clients, log := extServer(t)
	admin, ctx := clients(extAdmin), t.Context()
	_, err := admin.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("team-a-tagged"), Runtime: types.RuntimePython311, Role: aws.String("r"),
		Handler: aws.String("app.handler"), Code: &types.FunctionCode{ZipFile: pyZip(t)},
		Tags: map[string]string{"team": "a", "env": "dev"},
	})
	if err != nil {
		t.Fatal(err)
	}
	arn := extARN + "team-a-tagged"
	waitActive(t, admin, "team-a-tagged") // becoming Active changes the RevisionId
	got, err := admin.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("team-a-tagged")})
	if err != nil || !maps.Equal(got.Tags, map[string]string{"team": "a", "env": "dev"}) {
		t.Fatalf("GetFunction Tags %v (%v)", got.Tags, err)
	}
	rev := aws.ToString(got.Configuration.RevisionId)

	dev := clients(extDevA)
	if _, err := dev.TagResource(ctx, &lambda.TagResourceInput{Resource: aws.String(arn), Tags: map[string]string{"env": "prod", "cost": "42", "empty": ""}}); err != nil {
		t.Fatal(err)
	}
	if _, err := dev.UntagResource(ctx, &lambda.UntagResourceInput{Resource: aws.String(arn), TagKeys: []string{"cost", "never-set"}}); err != nil {
		t.Fatal(err)
	}
	list, err := dev.ListTags(ctx, &lambda.ListTagsInput{Resource: aws.String(arn)})
	if want := map[string]string{"team": "a", "env": "prod", "empty": ""}; err != nil || !maps.Equal(list.Tags, want) {
		t.Fatalf("ListTags %v (%v), want %v", list.Tags, err, want)
	}
	if got := revisionOf(t, admin, "team-a-tagged"); got != rev {
		t.Errorf("tagging changed the RevisionId from %s to %s", rev, got)
	}

	many := map[string]string{}
	for i := range 48 { // 3 tags already: 51
		many["k"+strconv.Itoa(i)] = "v"
	}
	tagErrors := []struct {
		name, resource string
		tags           map[string]string
		typ, msg       string
	}{
		{"too many", arn, many, "InvalidParameterValueException", "at most 50 tags"},
		{"reserved prefix", arn, map[string]string{"AWS:owner": "x"}, "InvalidParameterValueException", "aws: are reserved"},
		{"long key", arn, map[string]string{strings.Repeat("k", 129): "x"}, "ValidationException", "length less than or equal to 128"},
		{"long value", arn, map[string]string{"k": strings.Repeat("v", 257)}, "ValidationException", "less than or equal to 256"},
		{"unknown function", extARN + "team-a-none", map[string]string{"k": "v"}, "ResourceNotFoundException", "Function not found: " + extARN + "team-a-none"},
		{"a name, not an ARN", "team-a-tagged", map[string]string{"k": "v"}, "ValidationException", "at 'resource'"},
		{"a version", arn + ":1", map[string]string{"k": "v"}, "InvalidParameterValueException", "not to a version or alias"},
		{"not a function", "arn:aws:lambda:us-east-1:000000000000:event-source-mapping:abc", map[string]string{"k": "v"}, "InvalidParameterValueException", "Nimbus tags functions only"},
		{"another account", "arn:aws:lambda:us-east-1:111111111111:function:team-a-tagged", map[string]string{"k": "v"}, "ResourceNotFoundException", "Function not found"},
	}
	for _, tt := range tagErrors {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dev.TagResource(ctx, &lambda.TagResourceInput{Resource: aws.String(tt.resource), Tags: tt.tags})
			wantAPIError(t, err, tt.typ, tt.msg)
		})
	}
	_, err = admin.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("team-a-toomany"), Runtime: types.RuntimePython311, Role: aws.String("r"),
		Handler: aws.String("app.handler"), Code: &types.FunctionCode{ZipFile: pyZip(t)},
		Tags: maps.Collect(func(yield func(string, string) bool) {
			for i := range 51 {
				yield("k"+strconv.Itoa(i), "v")
			}
		}),
	})
	wantAPIError(t, err, "InvalidParameterValueException", "at most 50 tags")

	// Another team's keys: denied, whether the function exists or not.
	other, inv := clients(extDevB), clients(extInvB)
	_, err = other.ListTags(ctx, &lambda.ListTagsInput{Resource: aws.String(arn)})
	wantAPIError(t, err, "AccessDeniedException", "dev-b")
	_, err = other.TagResource(ctx, &lambda.TagResourceInput{Resource: aws.String(arn), Tags: map[string]string{"k": "v"}})
	wantAPIError(t, err, "AccessDeniedException", "on function team-a-tagged")
	_, err = other.UntagResource(ctx, &lambda.UntagResourceInput{Resource: aws.String(arn), TagKeys: []string{"team"}})
	wantAPIError(t, err, "AccessDeniedException", "on function team-a-tagged")
	_, err = other.ListTags(ctx, &lambda.ListTagsInput{Resource: aws.String(extARN + "team-a-none")})
	wantAPIError(t, err, "AccessDeniedException", "dev-b")
	_, err = inv.ListTags(ctx, &lambda.ListTagsInput{Resource: aws.String(extARN + "team-b-x")})
	wantAPIError(t, err, "AccessDeniedException", "inv-b")
	if list, _ := admin.ListTags(ctx, &lambda.ListTagsInput{Resource: aws.String(arn)}); len(list.Tags) != 3 {
		t.Errorf("tags after refused changes: %v", list.Tags)
	}

	evs, _, err := log.List(ctx, audit.Filter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range evs {
		if e.Function == "team-a-tagged" {
			seen[e.Action+" "+e.Key+" "+strconv.Itoa(e.Status)]++
		}
	}
	for _, want := range []string{"TagResource dev-a 204", "UntagResource dev-a 204", "TagResource dev-b 403", "UntagResource dev-b 403", "TagResource dev-a 400"} {
		if seen[want] == 0 {
			t.Errorf("audit trail lacks %q: %v", want, seen)
		}
	}
}

// policyDoc is a policy document as GetPolicy answers it.
type policyDoc struct {
	Version, Id string
	Statement   []map[string]any
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPolicy: AddPermission, GetPolicy and RemovePermission in Lambda's
// shapes and with its errors; the policy's RevisionId is the function's.
func TestPolicy(t *testing.T) {
	clients, _ := extServer(t)
	admin, ctx := clients(extAdmin), t.Context()
	createPy(t, admin, "team-a-fn", pyZip(t))
	waitActive(t, admin, "team-a-fn")
	name := aws.String("team-a-fn")
	dev := clients(extDevA)

	_, err := dev.GetPolicy(ctx, &lambda.GetPolicyInput{FunctionName: name})
	wantAPIError(t, err, "ResourceNotFoundException", "The resource you requested does not exist.")

	rev := revisionOf(t, dev, "team-a-fn")
	out, err := dev.AddPermission(ctx, &lambda.AddPermissionInput{
		FunctionName: name, StatementId: aws.String("s3"), Action: aws.String("lambda:InvokeFunction"),
		Principal: aws.String("s3.amazonaws.com"), SourceArn: aws.String("arn:aws:s3:::uploads"),
		SourceAccount: aws.String("000000000000"), RevisionId: aws.String(rev),
	})
	if err != nil {
		t.Fatal(err)
	}
	wantStatement := `{"Action":"lambda:InvokeFunction","Condition":{"ArnLike":{"AWS:SourceArn":"arn:aws:s3:::uploads"},"StringEquals":{"AWS:SourceAccount":"000000000000"}},"Effect":"Allow","Principal":{"Service":"s3.amazonaws.com"},"Resource":"` + extARN + `team-a-fn","Sid":"s3"}`
	var st map[string]any
	if err := json.Unmarshal([]byte(aws.ToString(out.Statement)), &st); err != nil || jsonOf(t, st) != wantStatement {
		t.Fatalf("Statement %s (%v), want %s", aws.ToString(out.Statement), err, wantStatement)
	}
	_, err = dev.AddPermission(ctx, &lambda.AddPermissionInput{FunctionName: name, StatementId: aws.String("late"),
		Action: aws.String("lambda:InvokeFunction"), Principal: aws.String("*"), RevisionId: aws.String(rev)})
	wantAPIError(t, err, "PreconditionFailedException", "Revision Id")

	// Other principals' shapes: an account, a role's ARN, an access key id.
	for sid, p := range map[string]string{"acct": "111122223333", "role": "arn:aws:iam::111122223333:role/r", "key": extInvB} {
		if _, err := dev.AddPermission(ctx, &lambda.AddPermissionInput{FunctionName: name, StatementId: aws.String(sid),
			Action: aws.String("lambda:GetFunction"), Principal: aws.String(p), Qualifier: aws.String("$LATEST")}); err != nil {
			t.Fatalf("AddPermission %s: %v", p, err)
		}
	}
	pol, err := dev.GetPolicy(ctx, &lambda.GetPolicyInput{FunctionName: name})
	if err != nil {
		t.Fatal(err)
	}
	if got := revisionOf(t, dev, "team-a-fn"); aws.ToString(pol.RevisionId) != got || got == rev {
		t.Errorf("GetPolicy RevisionId %s, the function's %s (before the permissions %s)", aws.ToString(pol.RevisionId), got, rev)
	}
	var doc policyDoc
	if err := json.Unmarshal([]byte(aws.ToString(pol.Policy)), &doc); err != nil || doc.Version != "2012-10-17" || doc.Id != "default" || len(doc.Statement) != 4 {
		t.Fatalf("Policy %s (%v)", aws.ToString(pol.Policy), err)
	}
	if got := jsonOf(t, doc.Statement[0]); got != wantStatement {
		t.Errorf("statement 0 %s, want %s", got, wantStatement)
	}
	principals := []string{}
	for _, s := range doc.Statement[1:] {
		principals = append(principals, jsonOf(t, s["Principal"]))
	}
	if got := strings.Join(principals, " "); !strings.Contains(got, `{"AWS":"arn:aws:iam::111122223333:root"}`) ||
		!strings.Contains(got, `{"AWS":"arn:aws:iam::111122223333:role/r"}`) || !strings.Contains(got, `{"AWS":"`+extInvB+`"}`) {
		t.Errorf("principals %s", got)
	}

	addErrors := []struct {
		name     string
		in       lambda.AddPermissionInput
		typ, msg string
	}{
		{"duplicate Sid", lambda.AddPermissionInput{StatementId: aws.String("s3"), Action: aws.String("lambda:InvokeFunction"), Principal: aws.String("sns.amazonaws.com")},
			"ResourceConflictException", "The statement id (s3) provided already exists"},
		{"bad action", lambda.AddPermissionInput{StatementId: aws.String("x"), Action: aws.String("s3:GetObject"), Principal: aws.String("*")},
			"ValidationException", "at 'action'"},
		{"bad principal", lambda.AddPermissionInput{StatementId: aws.String("x"), Action: aws.String("lambda:InvokeFunction"), Principal: aws.String("someone")},
			"InvalidParameterValueException", "The provided principal was invalid"},
		{"bad Sid", lambda.AddPermissionInput{StatementId: aws.String("a b"), Action: aws.String("lambda:InvokeFunction"), Principal: aws.String("*")},
			"ValidationException", "at 'statementId'"},
		{"bad source account", lambda.AddPermissionInput{StatementId: aws.String("x"), Action: aws.String("lambda:InvokeFunction"), Principal: aws.String("*"), SourceAccount: aws.String("12")},
			"ValidationException", "at 'sourceAccount'"},
		{"a version", lambda.AddPermissionInput{StatementId: aws.String("x"), Action: aws.String("lambda:InvokeFunction"), Principal: aws.String("*"), Qualifier: aws.String("1")},
			"ResourceNotFoundException", "team-a-fn:1"},
		{"unknown function", lambda.AddPermissionInput{FunctionName: aws.String("team-a-none"), StatementId: aws.String("x"), Action: aws.String("lambda:InvokeFunction"), Principal: aws.String("*")},
			"ResourceNotFoundException", "Function not found"},
		{"too large", lambda.AddPermissionInput{StatementId: aws.String("big"), Action: aws.String("lambda:InvokeFunction"), Principal: aws.String("*"), SourceArn: aws.String("arn:aws:s3:::" + strings.Repeat("b", 21000))},
			"PolicyLengthExceededException", "bigger than the limit (20480)"},
	}
	for _, tt := range addErrors {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			if in.FunctionName == nil {
				in.FunctionName = name
			}
			_, err := dev.AddPermission(ctx, &in)
			wantAPIError(t, err, tt.typ, tt.msg)
		})
	}

	_, err = dev.RemovePermission(ctx, &lambda.RemovePermissionInput{FunctionName: name, StatementId: aws.String("nope")})
	wantAPIError(t, err, "ResourceNotFoundException", "Statement nope is not found in resource policy.")
	_, err = dev.RemovePermission(ctx, &lambda.RemovePermissionInput{FunctionName: name, StatementId: aws.String("s3"), RevisionId: aws.String(rev)})
	wantAPIError(t, err, "PreconditionFailedException", "Revision Id")
	for _, sid := range []string{"s3", "acct", "role", "key"} {
		if _, err := dev.RemovePermission(ctx, &lambda.RemovePermissionInput{FunctionName: name, StatementId: aws.String(sid)}); err != nil {
			t.Fatalf("RemovePermission %s: %v", sid, err)
		}
	}
	_, err = dev.GetPolicy(ctx, &lambda.GetPolicyInput{FunctionName: name})
	wantAPIError(t, err, "ResourceNotFoundException", "The resource you requested does not exist.")

	// Another team's developer can neither read nor change the policy (nor
	// grant itself a permission).
	other := clients(extDevB)
	_, err = other.AddPermission(ctx, &lambda.AddPermissionInput{FunctionName: name, StatementId: aws.String("me"),
		Action: aws.String("lambda:InvokeFunction"), Principal: aws.String(extDevB)})
	wantAPIError(t, err, "AccessDeniedException", "dev-b")
	_, err = other.GetPolicy(ctx, &lambda.GetPolicyInput{FunctionName: name})
	wantAPIError(t, err, "AccessDeniedException", "dev-b")
	_, err = other.RemovePermission(ctx, &lambda.RemovePermissionInput{FunctionName: name, StatementId: aws.String("s3")})
	wantAPIError(t, err, "AccessDeniedException", "dev-b")
}

// TestPolicyGrantsInvoke: a statement naming a key (by access key id or as
// an IAM user ARN of its name), or "*", lets that key invoke the function
// although its glob does not cover it, and nothing more; statements with
// conditions or other actions grant nothing; removing it takes it back.
func TestPolicyGrantsInvoke(t *testing.T) {
	clients, _ := extServer(t)
	admin, ctx := clients(extAdmin), t.Context()
	createPy(t, admin, "team-a-shared", pyZip(t))
	waitActive(t, admin, "team-a-shared")
	name := aws.String("team-a-shared")
	owner, inv, devB := clients(extDevA), clients(extInvB), clients(extDevB)
	invoke := func(c *lambda.Client) error {
		_, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: name, Payload: []byte(`{}`)})
		return err
	}
	grant := func(sid, principal, action string, mod func(*lambda.AddPermissionInput)) {
		t.Helper()
		in := &lambda.AddPermissionInput{FunctionName: name, StatementId: aws.String(sid), Action: aws.String(action), Principal: aws.String(principal)}
		if mod != nil {
			mod(in)
		}
		if _, err := owner.AddPermission(ctx, in); err != nil {
			t.Fatalf("AddPermission %s: %v", sid, err)
		}
	}
	revoke := func(sid string) {
		t.Helper()
		if _, err := owner.RemovePermission(ctx, &lambda.RemovePermissionInput{FunctionName: name, StatementId: aws.String(sid)}); err != nil {
			t.Fatalf("RemovePermission %s: %v", sid, err)
		}
	}
	wantAPIError(t, invoke(inv), "AccessDeniedException", "inv-b")

	// Statements that grant the key nothing.
	grant("other-action", extInvB, "lambda:GetFunction", nil)
	grant("conditional", extInvB, "lambda:InvokeFunction", func(in *lambda.AddPermissionInput) { in.SourceAccount = aws.String("000000000000") })
	grant("service", "events.amazonaws.com", "lambda:InvokeFunction", nil)
	grant("other-key", extDevB, "lambda:InvokeFunction", nil)
	grant("other-account", "arn:aws:iam::111111111111:user/inv-b", "lambda:InvokeFunction", nil)
	wantAPIError(t, invoke(inv), "AccessDeniedException", "inv-b")

	grant("by-id", extInvB, "lambda:InvokeFunction", nil)
	if err := invoke(inv); err != nil {
		t.Fatalf("invoke granted by key id: %v", err)
	}
	// Invoking only: no read, no change.
	_, err := inv.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: name})
	wantAPIError(t, err, "AccessDeniedException", "inv-b")
	_, err = devB.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: name})
	wantAPIError(t, err, "AccessDeniedException", "dev-b")
	if err := invoke(devB); err != nil { // "other-key" names dev-b's id
		t.Errorf("dev-b, granted by id: %v", err)
	}
	revoke("by-id")
	wantAPIError(t, invoke(inv), "AccessDeniedException", "inv-b")

	grant("by-user", "arn:aws:iam::000000000000:user/inv-b", "lambda:*", nil)
	if err := invoke(inv); err != nil {
		t.Fatalf("invoke granted by user ARN: %v", err)
	}
	revoke("by-user")
	revoke("other-key")
	wantAPIError(t, invoke(inv), "AccessDeniedException", "inv-b")
	wantAPIError(t, invoke(devB), "AccessDeniedException", "dev-b")

	grant("everyone", "*", "lambda:InvokeFunction", nil)
	for _, c := range []*lambda.Client{inv, devB} {
		if err := invoke(c); err != nil {
			t.Errorf("invoke granted to *: %v", err)
		}
	}
	_, err = devB.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: name, Description: aws.String("mine")})
	wantAPIError(t, err, "AccessDeniedException", "dev-b")
}

// TestFunctionConfigs: the recursion and runtime management configs are
// stored and answered as Lambda does, with its errors; code signing
// answers that there is none, and refuses to make one.
func TestFunctionConfigs(t *testing.T) {
	clients, _ := extServer(t)
	admin, ctx := clients(extAdmin), t.Context()
	createPy(t, admin, "team-a-cfg", pyZip(t))
	name := aws.String("team-a-cfg")
	dev := clients(extDevA)

	rec, err := dev.GetFunctionRecursionConfig(ctx, &lambda.GetFunctionRecursionConfigInput{FunctionName: name})
	if err != nil || rec.RecursiveLoop != types.RecursiveLoopTerminate {
		t.Fatalf("recursion config %v (%v), want Terminate", rec, err)
	}
	put, err := dev.PutFunctionRecursionConfig(ctx, &lambda.PutFunctionRecursionConfigInput{FunctionName: name, RecursiveLoop: types.RecursiveLoopAllow})
	if err != nil || put.RecursiveLoop != types.RecursiveLoopAllow {
		t.Fatalf("PutFunctionRecursionConfig %v (%v)", put, err)
	}
	if rec, _ := dev.GetFunctionRecursionConfig(ctx, &lambda.GetFunctionRecursionConfigInput{FunctionName: name}); rec.RecursiveLoop != types.RecursiveLoopAllow {
		t.Errorf("after Allow: %s", rec.RecursiveLoop)
	}
	_, err = dev.PutFunctionRecursionConfig(ctx, &lambda.PutFunctionRecursionConfigInput{FunctionName: name, RecursiveLoop: "Sometimes"})
	wantAPIError(t, err, "ValidationException", "[Terminate, Allow]")
	_, err = dev.GetFunctionRecursionConfig(ctx, &lambda.GetFunctionRecursionConfigInput{FunctionName: aws.String("team-a-none")})
	wantAPIError(t, err, "ResourceNotFoundException", "Function not found")
	_, err = clients(extDevB).PutFunctionRecursionConfig(ctx, &lambda.PutFunctionRecursionConfigInput{FunctionName: name, RecursiveLoop: types.RecursiveLoopTerminate})
	wantAPIError(t, err, "AccessDeniedException", "dev-b")

	rm, err := dev.GetRuntimeManagementConfig(ctx, &lambda.GetRuntimeManagementConfigInput{FunctionName: name})
	if err != nil || rm.UpdateRuntimeOn != types.UpdateRuntimeOnAuto || aws.ToString(rm.FunctionArn) != extARN+"team-a-cfg" || rm.RuntimeVersionArn != nil {
		t.Fatalf("runtime management config %+v (%v)", rm, err)
	}
	prm, err := dev.PutRuntimeManagementConfig(ctx, &lambda.PutRuntimeManagementConfigInput{FunctionName: name, UpdateRuntimeOn: types.UpdateRuntimeOnFunctionUpdate})
	if err != nil || prm.UpdateRuntimeOn != types.UpdateRuntimeOnFunctionUpdate || aws.ToString(prm.FunctionArn) != extARN+"team-a-cfg" {
		t.Fatalf("PutRuntimeManagementConfig %+v (%v)", prm, err)
	}
	if rm, _ := dev.GetRuntimeManagementConfig(ctx, &lambda.GetRuntimeManagementConfigInput{FunctionName: name}); rm.UpdateRuntimeOn != types.UpdateRuntimeOnFunctionUpdate {
		t.Errorf("after FunctionUpdate: %s", rm.UpdateRuntimeOn)
	}
	_, err = dev.PutRuntimeManagementConfig(ctx, &lambda.PutRuntimeManagementConfigInput{FunctionName: name, UpdateRuntimeOn: types.UpdateRuntimeOnManual,
		RuntimeVersionArn: aws.String("arn:aws:lambda:us-east-1::runtime:abc")})
	wantAPIError(t, err, "InvalidParameterValueException", "Manual is not supported")
	_, err = dev.PutRuntimeManagementConfig(ctx, &lambda.PutRuntimeManagementConfigInput{FunctionName: name, UpdateRuntimeOn: "Never"})
	wantAPIError(t, err, "ValidationException", "updateRuntimeOn")
	_, err = dev.GetRuntimeManagementConfig(ctx, &lambda.GetRuntimeManagementConfigInput{FunctionName: name, Qualifier: aws.String("3")})
	wantAPIError(t, err, "ResourceNotFoundException", "team-a-cfg:3")

	list, err := dev.ListCodeSigningConfigs(ctx, &lambda.ListCodeSigningConfigsInput{})
	if err != nil || len(list.CodeSigningConfigs) != 0 || list.NextMarker != nil {
		t.Fatalf("ListCodeSigningConfigs %+v (%v)", list, err)
	}
	fcs, err := dev.GetFunctionCodeSigningConfig(ctx, &lambda.GetFunctionCodeSigningConfigInput{FunctionName: name})
	if err != nil || aws.ToString(fcs.CodeSigningConfigArn) != "" || aws.ToString(fcs.FunctionName) != "team-a-cfg" {
		t.Fatalf("GetFunctionCodeSigningConfig %+v (%v)", fcs, err)
	}
	_, err = dev.PutFunctionCodeSigningConfig(ctx, &lambda.PutFunctionCodeSigningConfigInput{FunctionName: name,
		CodeSigningConfigArn: aws.String("arn:aws:lambda:us-east-1:000000000000:code-signing-config:csc-1")})
	wantAPIError(t, err, "InvalidParameterValueException", "Nimbus does not verify code signatures")
	if _, err := dev.DeleteFunctionCodeSigningConfig(ctx, &lambda.DeleteFunctionCodeSigningConfigInput{FunctionName: name}); err != nil {
		t.Errorf("DeleteFunctionCodeSigningConfig: %v", err)
	}
	_, err = dev.CreateCodeSigningConfig(ctx, &lambda.CreateCodeSigningConfigInput{AllowedPublishers: &types.AllowedPublishers{
		SigningProfileVersionArns: []string{"arn:aws:signer:us-east-1:000000000000:/signing-profiles/p/v"}}})
	wantAPIError(t, err, "InvalidParameterValueException", "Nimbus does not verify code signatures")
	_, err = dev.GetCodeSigningConfig(ctx, &lambda.GetCodeSigningConfigInput{CodeSigningConfigArn: aws.String("arn:aws:lambda:us-east-1:000000000000:code-signing-config:csc-1")})
	wantAPIError(t, err, "ResourceNotFoundException", "no code signing configs")
	_, err = dev.DeleteCodeSigningConfig(ctx, &lambda.DeleteCodeSigningConfigInput{CodeSigningConfigArn: aws.String("arn:aws:lambda:us-east-1:000000000000:code-signing-config:csc-1")})
	wantAPIError(t, err, "ResourceNotFoundException", "no code signing configs")
}

// TestAccountSettingsCountsWhatTheKeySees: the usage of a key restricted
// to some functions counts those; an admin's counts every function.
func TestAccountSettingsCountsWhatTheKeySees(t *testing.T) {
	clients, _ := extServer(t)
	admin, ctx := clients(extAdmin), t.Context()
	zip := pyZip(t)
	a := createPy(t, admin, "team-a-one", zip)
	createPy(t, admin, "team-b-one", zip)
	createPy(t, admin, "team-b-two", zip)
	for _, tt := range []struct {
		id    string
		count int64
	}{{extAdmin, 3}, {extDevA, 1}, {extDevB, 2}} {
		out, err := clients(tt.id).GetAccountSettings(ctx, &lambda.GetAccountSettingsInput{})
		if err != nil {
			t.Fatal(err)
		}
		if u := out.AccountUsage; u.FunctionCount != tt.count || u.TotalCodeSize != tt.count*a.CodeSize {
			t.Errorf("%s: usage %+v, want %d functions of %d bytes", extKeys[tt.id].Name, *u, tt.count, a.CodeSize)
		}
	}
	_, err := clients(extInvB).GetAccountSettings(ctx, &lambda.GetAccountSettingsInput{})
	wantAPIError(t, err, "AccessDeniedException", "inv-b")
}
