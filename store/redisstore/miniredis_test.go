package redisstore

import (
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/suppressd/suppressd/store/storetest"
	"github.com/suppressd/suppressd/suppression"
)

// TestContractOnMiniredis runs the store contract on miniredis, the
// embedded store of `suppressd dev`: the same scripts must give the
// domain's states there too. A fast check of the embedded path, not a
// substitute for the real-Redis tests.
func TestContractOnMiniredis(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	storetest.Run(t, func(t *testing.T) suppression.Store { return newStore(t, rdb, 4) })
}
