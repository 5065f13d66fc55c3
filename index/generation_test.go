package index

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
)

// TestIndexFollowsTheActiveGeneration: a rebuild's switch makes the replica
// drop its set and load the new generation; a store emptied (its pointer
// gone) leaves it loading, every read going to Redis (which answers "not
// built"); rebuilt under the same generation name, it is loaded again as
// the other build it is. Meanwhile a key the old generation had lost, and
// the rebuild restored, is read from Redis once the new one is active.
func TestIndexFollowsTheActiveGeneration(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, 2)
	kept, lost := randomKey(t), randomKey(t)
	require.NoError(t, r.write(ctx, record("default", kept), record("default", lost)))
	r.waitStored(t, "default", kept, lost)
	// The active generation loses a record, as a failover to a replica
	// that had not received it would: a replica started now cannot know it.
	bucket, field := r.opts.BucketOf("g1", "default", lost)
	require.EqualValues(t, 1, r.rdb.HDel(ctx, bucket, field).Val())

	rep := r.replica(newFaults(), nil, testOpts())
	rep.waitServing(t, 30*time.Second)
	g1 := rep.idx.Status().Generation
	recs, err := rep.store.Get(ctx, "default", []suppression.StorageKey{lost})
	require.NoError(t, err)
	require.Nil(t, recs[0], "neither the store nor the index has it")

	// The operator rebuilds: the new generation has it again.
	p, err := r.rebuild(ctx, r.opts.SwitchGrace(), false)
	require.NoError(t, err)
	require.Equal(t, "g2", p.Generation)
	switched := time.Now()
	require.Eventually(t, func() bool {
		recs, err := rep.store.Get(ctx, "default", []suppression.StorageKey{lost})
		return err == nil && recs[0] != nil
	}, 10*time.Second, time.Millisecond, "the restored record is answered")
	took := time.Since(switched)
	require.Less(t, took, time.Second, "the switch is followed within the bound (150ms), with margin for the machine")
	rep.waitServing(t, 30*time.Second)
	st := rep.idx.Status()
	require.Regexp(t, `^g2@`, st.Generation)
	require.GreaterOrEqual(t, testutil.ToFloat64(rep.idx.m.loads.WithLabelValues("switched")), 1.0)

	// Emptied: the pointer is gone with the rest.
	r.dropAll(ctx)
	require.Eventually(t, func() bool { return rep.idx.Status().State == "loading" }, 5*time.Second, time.Millisecond)
	require.Contains(t, rep.idx.Status().Detail, "not built")
	_, err = rep.store.Get(ctx, "default", []suppression.StorageKey{randomKey(t)})
	require.ErrorIs(t, err, suppression.ErrNotBuilt, "an emptied store is not an empty list, with or without an index")

	// Rebuilt as g1 again (a store with no active generation starts at
	// g1): another build, loaded as such.
	p, err = r.rebuild(ctx, 0, false)
	require.NoError(t, err)
	require.Equal(t, "g1", p.Generation)
	rep.waitServing(t, 30*time.Second)
	st = rep.idx.Status()
	require.Regexp(t, `^g1@`, st.Generation)
	require.NotEqual(t, g1, st.Generation, "the rebuilt g1 is not the g1 the replica first loaded")
	require.EqualValues(t, 2, st.Keys)
	recs, err = rep.store.Get(ctx, "default", []suppression.StorageKey{kept, lost})
	require.NoError(t, err)
	require.NotNil(t, recs[0])
	require.NotNil(t, recs[1])
}

// TestIndexRefusesAnotherLayout: a replica configured with another pepper
// (or bucket bits) than the active generation's never loads an index of
// it: its reads go to the store, which refuses them too.
func TestIndexRefusesAnotherLayout(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, 1)
	mine := r.opts
	r.opts.Keying = "another-pepper"
	rep := r.replica(newFaults(), nil, testOpts())
	r.opts = mine
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(rep.idx.m.loads.WithLabelValues("failed")) >= 2
	}, 10*time.Second, 10*time.Millisecond)
	st := rep.idx.Status()
	require.Equal(t, "loading", st.State)
	require.Contains(t, st.Detail, "key layout mismatch")
	_, err := rep.store.Get(ctx, "default", []suppression.StorageKey{randomKey(t)})
	require.ErrorIs(t, err, suppression.ErrLayoutMismatch)
}
