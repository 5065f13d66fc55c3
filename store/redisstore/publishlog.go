package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/suppressd/suppressd/suppression"
)

// PublishLog remembers which events were published, by source and id, so a
// retried request (an API call, a webhook, a click on the same link)
// publishes nothing twice. It lives outside every generation: it is not
// derived from Kafka and a rebuild does not touch it. Losing it costs only
// a duplicate event, which the merge rule makes harmless. Safe for
// concurrent use.
type PublishLog struct {
	rdb    redis.UniversalClient
	prefix string
}

// NewPublishLog returns the log under the store's prefix ("sd" when empty).
func NewPublishLog(rdb redis.UniversalClient, prefix string) *PublishLog {
	if prefix == "" {
		prefix = "sd"
	}
	return &PublishLog{rdb: rdb, prefix: prefix}
}

// key files an event under a hash of its source and id: ids may be derived
// from personal data, so they are not kept as they are.
func (l *PublishLog) key(source, id string) string {
	h := sha256.Sum256([]byte(source + "\x00" + id))
	return l.prefix + ":published:" + hex.EncodeToString(h[:16])
}

// Published reports whether an event with this source and id was recorded.
func (l *PublishLog) Published(ctx context.Context, source, id string) (bool, error) {
	n, err := l.rdb.Exists(ctx, l.key(source, id)).Result()
	if err != nil {
		return false, fmt.Errorf("%w: publish log: %w", suppression.ErrUnavailable, err)
	}
	return n == 1, nil
}

// RecordPublished records an event as published for ttl.
func (l *PublishLog) RecordPublished(ctx context.Context, source, id string, ttl time.Duration) error {
	if err := l.rdb.Set(ctx, l.key(source, id), "1", ttl).Err(); err != nil {
		return fmt.Errorf("%w: publish log: %w", suppression.ErrUnavailable, err)
	}
	return nil
}
