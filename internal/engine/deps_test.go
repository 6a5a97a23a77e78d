package engine

// The test functions under testdata/ (compiled by the tests) are built with
// aws-lambda-go; testdata is invisible to `go mod tidy`, so this import keeps
// the module required.
import _ "github.com/aws/aws-lambda-go/lambda"
