package nats

// SetFirstBatch makes ReadRange's first pulls ask for n messages, whatever
// their size (n past the pending limit makes the client drop some), until
// the returned func puts the default back.
func SetFirstBatch(n int) (restore func()) {
	old := firstBatch
	firstBatch = n
	return func() { firstBatch = old }
}
