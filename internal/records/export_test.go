package records

import "context"

// SetMaxSpans sets how many spans one List reads, for the test's length,
// and returns the function that puts it back.
func SetMaxSpans(n int) func() {
	old := maxSpans
	maxSpans = n
	return func() { maxSpans = old }
}

// Fold runs the aggregation's rounds (without the lease) until every
// record is folded in.
func (s *Store) Fold(ctx context.Context) error {
	for {
		if _, err := s.usage.round(ctx); err != nil {
			return err
		}
		c, err := s.usage.cursors(ctx)
		if err != nil {
			return err
		}
		info, err := s.st.Info(ctx)
		if err != nil {
			return err
		}
		low := c.usage
		for _, s := range c.stats {
			low = min(low, s)
		}
		if low >= info.State.LastSeq {
			return nil
		}
	}
}
