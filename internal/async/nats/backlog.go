package nats

import (
	"context"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-serverless/nimbus/internal/async"
)

var _ async.Backlogger = (*Backend)(nil)

// Backlog implements async.Backlogger: one stream info request, whose
// subject counts are the messages per function.
func (q *queue) Backlog(ctx context.Context) (map[string]int, error) {
	info, err := q.events.Info(ctx, jetstream.WithSubjectFilter(q.b.names.evSubj+">"))
	if err != nil {
		return nil, q.unavailable("count waiting events", err)
	}
	out := make(map[string]int, len(info.State.Subjects))
	for subj, n := range info.State.Subjects {
		if fn, ok := strings.CutPrefix(subj, q.b.names.evSubj); ok {
			out[fn] = int(n)
		}
	}
	return out, nil
}
