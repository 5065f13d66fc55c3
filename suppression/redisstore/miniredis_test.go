package redisstore

import (
	"context"
	mrand "math/rand/v2"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// TestScriptOnMiniredis runs the merge script on miniredis, the embedded
// store of `suppressd dev`, and requires the domain's states there too. It
// is a fast check of the embedded path, not a substitute for the real-Redis
// tests above.
func TestScriptOnMiniredis(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	rng := mrand.New(mrand.NewPCG(21, 22))
	for round := 0; round < 10; round++ {
		s := newStore(t, rdb, 4)
		ws := randomWrites(rng, 5+rng.IntN(30), 5)
		for rest := ws; len(rest) > 0; {
			n := 1 + rng.IntN(len(rest))
			_, err := s.Apply(context.Background(), rest[:n])
			require.NoError(t, err)
			rest = rest[n:]
		}
		requireState(t, s, ws, "miniredis")
	}
}
