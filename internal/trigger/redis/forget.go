package redis

import (
	"context"
	"fmt"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/nimbus-serverless/nimbus/internal/trigger"
)

var _ trigger.Forgetter = (*Source)(nil)

// destroyGroup destroys group ARGV[1] of stream KEYS[1]; a stream that does
// not exist has no group to destroy (XGROUP DESTROY would fail on it).
var destroyGroup = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('XGROUP', 'DESTROY', KEYS[1], ARGV[1])`)

// dropConsumer deletes consumer ARGV[2] of group ARGV[1] of stream KEYS[1]
// unless it has pending entries (then it returns -1): checked and deleted
// in one step, so no entry read meanwhile is lost.
var dropConsumer = goredis.NewScript(`
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then return -1 end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])`)

// Forget removes what a deleted trigger left on the server. A group Nimbus
// named (config "group" empty: Options.Group) is destroyed, pending
// entries and all. A group the user named is theirs: only this node's
// consumer is deleted from it, and only when it has no pending entries
// (deleting it would lose them; then Forget leaves it and returns nil).
// A stream, group or consumer already gone is success.
func (s *Source) Forget(ctx context.Context, opts trigger.Options) error {
	if s.cfg.Group == "" && opts.Group == "" {
		return nil // the shared default group "nimbus" is no one trigger's
	}
	set := s.settings(opts)
	rc := s.client(1)
	defer rc.Close()
	if s.cfg.Group == "" {
		if err := destroyGroup.Run(ctx, rc, []string{s.cfg.Stream}, set.group).Err(); err != nil {
			return fmt.Errorf("destroy group %q of stream %q: %w", set.group, s.cfg.Stream, err)
		}
		return nil
	}
	err := dropConsumer.Run(ctx, rc, []string{s.cfg.Stream}, set.group, set.consumer).Err()
	if err != nil && !strings.HasPrefix(err.Error(), "NOGROUP") {
		return fmt.Errorf("delete consumer %q of group %q of stream %q: %w", set.consumer, set.group, s.cfg.Stream, err)
	}
	return nil
}
