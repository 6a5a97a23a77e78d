package api

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"strings"

	"github.com/nimbus-serverless/nimbus"
	"github.com/nimbus-serverless/nimbus/internal/auth"
	"github.com/nimbus-serverless/nimbus/internal/lazyre"
	"github.com/nimbus-serverless/nimbus/internal/trigger/funcurl"
)

// The resource-based policies of a function and of each of its versions
// and aliases: AddPermission, RemovePermission and GetPolicy, in Lambda's
// policy document shape. What a statement grants Nimbus's access keys is
// policyGrants (docs/auth.md).

const policyPath = "/2015-03-31/functions/{name}/policy"

func init() {
	maps.Copy(actions, map[string]string{
		"POST " + policyPath:              "AddPermission",
		"DELETE " + policyPath + "/{sid}": "RemovePermission",
	})
}

func (s *Server) policyRoutes() {
	s.handle("POST "+policyPath, s.addPermission)
	s.handle("DELETE "+policyPath+"/{sid}", s.removePermission)
	s.handle("GET "+policyPath, s.getPolicy)
}

// maxPolicySize is Lambda's limit on a function policy document, in bytes.
const maxPolicySize = 20480

// errPolicyLength is Lambda's error type for a policy over maxPolicySize.
const errPolicyLength = "PolicyLengthExceededException"

type addPermissionRequest struct {
	StatementId           string
	Action                string
	Principal             string
	SourceArn             string
	SourceAccount         string
	PrincipalOrgID        string
	EventSourceToken      string
	FunctionUrlAuthType   string
	InvokedViaFunctionUrl bool
	RevisionId            string
}

// Lambda's patterns of AddPermission's members.
var (
	statementIDRE = lazyre.New(`^[a-zA-Z0-9_-]{1,100}$`)
	actionRE      = lazyre.New(`^(lambda:[*]|lambda:[a-zA-Z]+|[*])$`)
	sourceArnRE   = lazyre.New(`^arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:([a-z]{2}(-gov)?-[a-z]+-\d{1})?:(\d{12})?:(.*)$`)
	accountRE     = lazyre.New(`^\d{12}$`)
	orgIDRE       = lazyre.New(`^o-[a-z0-9]{10,32}$`)
	tokenRE       = lazyre.New(`^[a-zA-Z0-9._\-]{0,256}$`)
	keyIDRE       = lazyre.New(`^[A-Z0-9]{16,128}$`)
	serviceRE     = lazyre.New(`^[a-z0-9-]+(\.[a-z0-9-]+)*\.amazonaws\.com(\.cn)?$|^[a-z0-9-]+(\.[a-z0-9-]+)+$`)
)

// statement checks the request and returns its statement.
func (req *addPermissionRequest) statement() (nimbus.PolicyStatement, error) {
	st := nimbus.PolicyStatement{Sid: req.StatementId, Action: req.Action, Principal: req.Principal,
		SourceArn: req.SourceArn, SourceAccount: req.SourceAccount, PrincipalOrgID: req.PrincipalOrgID,
		EventSourceToken: req.EventSourceToken, FunctionURLAuthType: req.FunctionUrlAuthType,
		InvokedViaFunctionURL: req.InvokedViaFunctionUrl}
	check := func(ok bool, field, value, constraint string) error {
		if ok {
			return nil
		}
		return nimbus.Errorf(nimbus.ErrValidation, "1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: %s", value, field, constraint)
	}
	for _, err := range []error{
		check(st.Sid != "", "statementId", "null", "Member must not be null"),
		check(st.Action != "", "action", "null", "Member must not be null"),
		check(st.Principal != "", "principal", "null", "Member must not be null"),
		check(statementIDRE().MatchString(st.Sid), "statementId", st.Sid, "Member must satisfy regular expression pattern: ([a-zA-Z0-9-_]+) and have length less than or equal to 100"),
		check(actionRE().MatchString(st.Action), "action", st.Action, "Member must satisfy regular expression pattern: (lambda:[*]|lambda:[a-zA-Z]+|[*])"),
		check(!strings.ContainsFunc(st.Principal, isSpace), "principal", st.Principal, `Member must satisfy regular expression pattern: [^\s]+`),
		check(st.SourceArn == "" || sourceArnRE().MatchString(st.SourceArn), "sourceArn", st.SourceArn, `Member must satisfy regular expression pattern: arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:([a-z]{2}(-gov)?-[a-z]+-\d{1})?:(\d{12})?:(.*)`),
		check(st.SourceAccount == "" || accountRE().MatchString(st.SourceAccount), "sourceAccount", st.SourceAccount, `Member must satisfy regular expression pattern: \d{12}`),
		check(st.PrincipalOrgID == "" || orgIDRE().MatchString(st.PrincipalOrgID), "principalOrgID", st.PrincipalOrgID, `Member must satisfy regular expression pattern: ^o-[a-z0-9]{10,32}$`),
		check(tokenRE().MatchString(st.EventSourceToken), "eventSourceToken", st.EventSourceToken, `Member must satisfy regular expression pattern: [a-zA-Z0-9._\-]+ and have length less than or equal to 256`),
		check(st.FunctionURLAuthType == "" || st.FunctionURLAuthType == "NONE" || st.FunctionURLAuthType == "AWS_IAM", "functionUrlAuthType", st.FunctionURLAuthType, "Member must satisfy enum value set: [NONE, AWS_IAM]"),
	} {
		if err != nil {
			return st, err
		}
	}
	if !validPrincipal(st.Principal) {
		return st, nimbus.Invalidf("The provided principal was invalid. Please check the principal and try again: use *, an account id, an ARN, a service (s3.amazonaws.com) or a Nimbus access key id")
	}
	return st, nil
}

func isSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\f' || r == '\v'
}

// validPrincipal: *, an account id, an ARN, a service or an access key id.
func validPrincipal(p string) bool {
	return p == "*" || accountRE().MatchString(p) || strings.HasPrefix(p, "arn:") ||
		keyIDRE().MatchString(p) || serviceRE().MatchString(p)
}

// policyARN is the ARN a statement of qualifier q's policy names: the
// function's for $LATEST, the version's or alias's for the others.
func (s *Server) policyARN(name, q string) string {
	if q == nimbus.Latest {
		return s.arn(name)
	}
	return s.arn(name) + ":" + q
}

func (s *Server) addPermission(w http.ResponseWriter, r *http.Request) error {
	fn, q, err := s.qualifierTarget(r)
	if err != nil {
		return err
	}
	var req addPermissionRequest
	if err := decodeStrictLimit(w, r, maxConfigBody, &req); err != nil {
		return err
	}
	noteResource(r, req.StatementId)
	st, err := req.statement()
	if err != nil {
		return err
	}
	arn := s.policyARN(fn.Name, q)
	checkSize := func(next []nimbus.PolicyStatement) error {
		if n := len(policyDocument(arn, next)); n > maxPolicySize {
			return newError(http.StatusBadRequest, errPolicyLength, "The final policy size ("+itoa(int64(n))+") is bigger than the limit ("+itoa(maxPolicySize)+").")
		}
		return nil
	}
	if _, err := s.reg.AddPermission(r.Context(), fn.Name, q, st, req.RevisionId, checkSize); err != nil {
		return err
	}
	b, _ := json.Marshal(renderStatement(arn, st))
	return writeJSON(w, http.StatusCreated, struct{ Statement string }{string(b)})
}

func (s *Server) removePermission(w http.ResponseWriter, r *http.Request) error {
	fn, q, err := s.qualifierTarget(r)
	if err != nil {
		return err
	}
	sid := r.PathValue("sid")
	noteResource(r, sid)
	if !statementIDRE().MatchString(sid) {
		return nimbus.Errorf(nimbus.ErrValidation, "1 validation error detected: Value '%s' at 'statementId' failed to satisfy constraint: Member must satisfy regular expression pattern: ([a-zA-Z0-9-_.]+)", sid)
	}
	if _, err := s.reg.RemovePermission(r.Context(), fn.Name, q, sid, r.URL.Query().Get("RevisionId")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// getPolicy answers the policy of the function, version or alias the
// request names, with its RevisionId (registry.PolicyRevision).
func (s *Server) getPolicy(w http.ResponseWriter, r *http.Request) error {
	fn, q, err := s.qualifierTarget(r)
	if err != nil {
		return err
	}
	policy := fn.PolicyFor(q)
	if len(policy) == 0 {
		return nimbus.Errorf(nimbus.ErrNotFound, "The resource you requested does not exist.")
	}
	rev, err := s.reg.PolicyRevision(r.Context(), fn, q)
	if err != nil {
		return s.notFound(fn.Name, q, err)
	}
	return writeJSON(w, http.StatusOK, struct{ Policy, RevisionId string }{
		string(policyDocument(s.policyARN(fn.Name, q), policy)), rev})
}

// lambdaStatement is a statement as Lambda's policy document shows it.
type lambdaStatement struct {
	Sid       string
	Effect    string
	Principal any
	Action    string
	Resource  string
	Condition map[string]map[string]string `json:",omitempty"`
}

// renderStatement is st in Lambda's shape, on the function arn.
func renderStatement(arn string, st nimbus.PolicyStatement) lambdaStatement {
	out := lambdaStatement{Sid: st.Sid, Effect: "Allow", Principal: renderPrincipal(st.Principal), Action: st.Action, Resource: arn}
	cond := func(op, key, value string) {
		if value == "" {
			return
		}
		if out.Condition == nil {
			out.Condition = map[string]map[string]string{}
		}
		if out.Condition[op] == nil {
			out.Condition[op] = map[string]string{}
		}
		out.Condition[op][key] = value
	}
	cond("StringEquals", "AWS:SourceAccount", st.SourceAccount)
	cond("ArnLike", "AWS:SourceArn", st.SourceArn)
	cond("StringEquals", "aws:PrincipalOrgID", st.PrincipalOrgID)
	cond("StringEquals", "lambda:EventSourceToken", st.EventSourceToken)
	cond("StringEquals", "lambda:FunctionUrlAuthType", st.FunctionURLAuthType)
	if st.InvokedViaFunctionURL {
		cond("Bool", "lambda:InvokedViaFunctionUrl", "true")
	}
	return out
}

// renderPrincipal is Lambda's Principal for what AddPermission was given:
// "*", {"AWS": ...} for an account (its root), an ARN or an access key
// id, {"Service": ...} for a service.
func renderPrincipal(p string) any {
	switch {
	case p == "*":
		return "*"
	case accountRE().MatchString(p):
		return map[string]string{"AWS": "arn:aws:iam::" + p + ":root"}
	case strings.HasPrefix(p, "arn:"), keyIDRE().MatchString(p):
		return map[string]string{"AWS": p}
	}
	return map[string]string{"Service": p}
}

// policyDocument is the function's policy document, as GetPolicy's Policy.
func policyDocument(arn string, sts []nimbus.PolicyStatement) []byte {
	doc := struct {
		Version   string
		Id        string
		Statement []lambdaStatement
	}{Version: "2012-10-17", Id: "default", Statement: make([]lambdaStatement, 0, len(sts))}
	for _, st := range sts {
		doc.Statement = append(doc.Statement, renderStatement(arn, st))
	}
	b, _ := json.Marshal(doc)
	return b
}

// invokeActions are the actions of a statement that grant invoking, and
// urlActions those that grant invoking through a function URL.
var (
	invokeActions = map[string]bool{"lambda:InvokeFunction": true, "lambda:*": true, "*": true}
	urlActions    = map[string]bool{"lambda:InvokeFunctionUrl": true, "lambda:*": true, "*": true}
)

// policyGrants reports whether the policy of function name's qualifier q
// ("" or $LATEST: the unqualified function's; a version's number or an
// alias's name) grants p lambda:InvokeFunction (viaURL false) or
// lambda:InvokeFunctionUrl on an AWS_IAM function URL (viaURL true). As
// in Lambda, only the policy of the qualifier the invocation names
// applies: the function's grants unqualified invocations, an alias's those
// through the alias, not through the version it points at nor the
// function's through the alias. A statement grants when its action is
// such, its principal is "*" (every key of the node), p's access key id,
// or arn:aws:iam::<account>:user/<p's key name>, and it has no condition
// (they name callers that are not access keys: a source ARN or account,
// an organization, a token) but those a function URL meets: its auth type
// AWS_IAM, and being invoked through a URL. It never grants more than
// invoking (docs/auth.md).
func (s *Server) policyGrants(ctx context.Context, p auth.Principal, name, q string, viaURL bool) bool {
	if name == "" || p.Name == "" || s.reg == nil {
		return false
	}
	fn, err := s.reg.Get(ctx, name)
	if err != nil {
		return false
	}
	user := "arn:aws:iam::" + s.cfg.Account + ":user/" + p.Name
	for _, st := range fn.PolicyFor(q) {
		if viaURL {
			urlOnly := st
			urlOnly.InvokedViaFunctionURL = false
			if urlOnly.FunctionURLAuthType == funcurl.AuthIAM {
				urlOnly.FunctionURLAuthType = ""
			}
			if !urlActions[st.Action] || urlOnly.Conditional() {
				continue
			}
		} else if !invokeActions[st.Action] || st.Conditional() {
			continue
		}
		if st.Principal == "*" || st.Principal == user || p.AccessKeyID != "" && st.Principal == p.AccessKeyID {
			return true
		}
	}
	return false
}
