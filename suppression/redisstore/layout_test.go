package redisstore

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
)

// TestLayoutMismatchFailsClosed: a replica configured with other bucket
// bits, or another pepper, than the generation was written with would read
// nothing and answer "allowed"; it refuses instead, reads and writes alike.
func TestLayoutMismatchFailsClosed(t *testing.T) {
	for name, rdb := range servers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			prefix := uniquePrefix()
			mk := func(bits int, pepper string) *Generations {
				g, err := NewGenerations(rdb, Options{Prefix: prefix, BucketBits: bits, Keyer: suppression.NewKeyer([]byte(pepper))}, 0)
				require.NoError(t, err)
				return g
			}
			first := mk(16, "pepper-one")
			w := Write{Namespace: "default", Key: key(1), Scope: "*", Change: suppression.Change{Action: suppression.ActionSuppress,
				Reason: suppression.ReasonUnsubscribe, Stamp: suppression.Stamp{At: 1, Tag: 1}, Origin: suppression.OriginRecipient, Source: "s"}}
			_, err := first.Apply(ctx, []Write{w})
			require.NoError(t, err)
			recs, err := mk(16, "pepper-one").Get(ctx, "default", []suppression.MatchKey{key(1)})
			require.NoError(t, err, "the same layout reads")
			require.NotNil(t, recs[0])

			for _, other := range []*Generations{mk(12, "pepper-one"), mk(16, "pepper-two")} {
				_, err := other.Get(ctx, "default", []suppression.MatchKey{key(1)})
				require.True(t, errors.Is(err, ErrLayoutMismatch), "%v", err)
				_, err = other.Apply(ctx, []Write{w})
				require.True(t, errors.Is(err, ErrLayoutMismatch), "%v", err)
			}
		})
	}
}
