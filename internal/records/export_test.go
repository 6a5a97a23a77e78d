package records

// SetMaxSpans sets how many spans one List reads, for the test's length,
// and returns the function that puts it back.
func SetMaxSpans(n int) func() {
	old := maxSpans
	maxSpans = n
	return func() { maxSpans = old }
}
