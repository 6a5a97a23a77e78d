package redis

import (
	"context"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

var _ trigger.DeadLetterer = (*Source)(nil)

// DeadLetter appends msgs to the configured dead-letter stream in one
// MULTI/EXEC, each as an entry with fields id, source, subject, time,
// contenttype and data. Errors: trigger.ErrNoDeadLetter
// (wrapped) when the Config names none.
func (s *Source) DeadLetter(ctx context.Context, msgs []trigger.Message) error {
	if s.cfg.DeadLetterStream == "" {
		return fmt.Errorf("redis: deadLetterStream is not set: %w", trigger.ErrNoDeadLetter)
	}
	rc := s.client(1)
	defer rc.Close()
	_, err := rc.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		for _, m := range msgs {
			p.XAdd(ctx, &goredis.XAddArgs{Stream: s.cfg.DeadLetterStream, Values: []any{
				"id", m.ID, "source", m.Source, "subject", m.Subject,
				"time", m.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
				"contenttype", m.DataContentType, "data", m.Data,
			}})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("dead-letter: append to stream %q: %w", s.cfg.DeadLetterStream, err)
	}
	return nil
}
