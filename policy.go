package nimbus

// PolicyStatement is one statement of a function's resource-based policy,
// as AddPermission gave it: the API renders it in Lambda's policy document
// shape. Only Allow statements exist, as in Lambda.
type PolicyStatement struct {
	Sid    string `json:"sid"`
	Action string `json:"action"` // lambda:InvokeFunction, lambda:*, ...
	// Principal is as given: "*", an account id, an ARN, a service
	// (s3.amazonaws.com) or a Nimbus access key id.
	Principal string `json:"principal"`
	// The conditions; empty ones do not apply.
	SourceArn             string `json:"sourceArn,omitempty"`
	SourceAccount         string `json:"sourceAccount,omitempty"`
	PrincipalOrgID        string `json:"principalOrgId,omitempty"`
	EventSourceToken      string `json:"eventSourceToken,omitempty"`
	FunctionURLAuthType   string `json:"functionUrlAuthType,omitempty"`
	InvokedViaFunctionURL bool   `json:"invokedViaFunctionUrl,omitempty"`
}

// PolicyFor is the resource-based policy of qualifier q ("" or Latest:
// Policy; a version's number or an alias's name: PolicyQualified). Each
// qualifier's policy covers only the invocations that name it, as in
// Lambda: the unqualified function's does not cover its aliases, nor an
// alias's the version it points at.
func (f *Function) PolicyFor(q string) []PolicyStatement {
	if q == "" || q == Latest {
		return f.Policy
	}
	return f.PolicyQualified[q]
}

// Conditional reports whether the statement has any condition.
func (s *PolicyStatement) Conditional() bool {
	return s.SourceArn != "" || s.SourceAccount != "" || s.PrincipalOrgID != "" ||
		s.EventSourceToken != "" || s.FunctionURLAuthType != "" || s.InvokedViaFunctionURL
}

// Recursion configs (Function.RecursiveLoop) and runtime management
// configs (Function.UpdateRuntimeOn), as Lambda names them.
const (
	RecursiveLoopTerminate = "Terminate"
	RecursiveLoopAllow     = "Allow"

	UpdateRuntimeAuto             = "Auto"
	UpdateRuntimeOnFunctionUpdate = "FunctionUpdate"
	UpdateRuntimeManual           = "Manual"
)
