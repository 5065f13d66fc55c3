package index

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
)

// testOpts are a replica's index options in these tests: a short bound, so
// that faults cross it often, and a quick retry.
func testOpts() Options {
	return Options{MaxLag: 150 * time.Millisecond, Retry: 100 * time.Millisecond}
}

// waitStored waits until the store (the apply stage) holds every key.
func (r *rig) waitStored(t testing.TB, ns string, keys ...suppression.StorageKey) {
	t.Helper()
	require.Eventually(t, func() bool {
		recs, err := r.store.Get(context.Background(), ns, keys)
		if err != nil {
			return false
		}
		for _, rec := range recs {
			if rec == nil {
				return false
			}
		}
		return true
	}, 30*time.Second, 10*time.Millisecond, "the apply stage wrote the keys\n%s", r.logs.String())
}

// TestIndexAnswersFromMemory: a fresh replica answers keys without a record
// from memory and reads only the others from Redis, per namespace, and a
// key written after it loaded reaches it through the ledger.
func TestIndexAnswersFromMemory(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, 3)
	held, other := randomKey(t), randomKey(t)
	require.NoError(t, r.write(ctx, record("default", held), record("brand2", other)))
	r.waitStored(t, "default", held)
	r.waitStored(t, "brand2", other)

	rep := r.replica(newFaults(), nil, testOpts())
	rep.waitServing(t, 30*time.Second)
	st := rep.idx.Status()
	require.Equal(t, "serving", st.State)
	require.EqualValues(t, 2, st.Keys)
	require.Regexp(t, `^g1@[0-9]+$`, st.Generation)

	absent := []suppression.StorageKey{randomKey(t), randomKey(t), other}
	recs, err := rep.store.Get(ctx, "default", append([]suppression.StorageKey{held}, absent...))
	require.NoError(t, err)
	require.NotNil(t, recs[0])
	require.True(t, recs[0][suppression.ScopeGlobal].Suppressed())
	require.Nil(t, recs[1])
	require.Nil(t, recs[2])
	require.Nil(t, recs[3], "a key held in another namespace has no record in this one")
	require.EqualValues(t, 3, testutil.ToFloat64(rep.idx.m.memory), "three keys answered in memory")
	require.EqualValues(t, 1, testutil.ToFloat64(rep.idx.m.store), "one read from Redis")

	// A key written now: in the index once the ledger brings it, then read
	// from Redis like any held key.
	late := randomKey(t)
	require.NoError(t, r.write(ctx, record("default", late)))
	require.Eventually(t, func() bool {
		v, _ := rep.idx.serving(time.Now())
		return v != nil && v.set.Has(SaltOf("default"), &late)
	}, 10*time.Second, time.Millisecond)
	r.waitStored(t, "default", late)
	recs, err = rep.store.Get(ctx, "default", []suppression.StorageKey{late})
	require.NoError(t, err)
	require.NotNil(t, recs[0])
}

// TestIndexFallsBackWhenStale: when the replica's connections stall (its
// feed and its generation checks stop answering), reads go to Redis for
// every key within the bound, the metric and the status say so, and once
// they answer again the index serves again without reloading; cut
// connections reconnect the same way.
func TestIndexFallsBackWhenStale(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, 2)
	k := randomKey(t)
	require.NoError(t, r.write(ctx, record("default", k)))
	r.waitStored(t, "default", k)
	f := newFaults()
	rep := r.replica(f, nil, testOpts())
	rep.waitServing(t, 30*time.Second)

	resume := f.stall()
	stalled := time.Now()
	require.Eventually(t, func() bool { v, _ := rep.idx.serving(time.Now()); return v == nil }, 5*time.Second, time.Millisecond)
	took := time.Since(stalled)
	require.Less(t, took, time.Second, "the index is dropped from reads at its bound (150ms), not later")
	st := rep.idx.Status()
	require.Equal(t, "lagging", st.State, "%+v", st)
	require.Contains(t, st.Detail, "reads go to the store")
	require.Zero(t, gaugeNamed(t, rep, "suppressd_index_serving"))

	fallbacks := func() float64 {
		return testutil.ToFloat64(rep.idx.m.fallbacks.WithLabelValues(reasonFeed)) + testutil.ToFloat64(rep.idx.m.fallbacks.WithLabelValues(reasonGeneration))
	}
	before := fallbacks()
	// The read itself waits on the stalled connection and fails: the
	// store is asked, not the index.
	rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := rep.store.Get(rctx, "default", []suppression.StorageKey{randomKey(t)})
	cancel()
	require.Error(t, err, "a stale index does not answer; the stalled store cannot")
	require.Equal(t, before+1, fallbacks())

	resume()
	rep.waitServing(t, 10*time.Second)
	require.EqualValues(t, 1, testutil.ToFloat64(rep.idx.m.loads.WithLabelValues("done")), "no reload after a stall")

	// Cut connections: the clients reconnect, the index serves on.
	f.cut()
	require.Eventually(t, func() bool {
		recs, err := rep.store.Get(ctx, "default", []suppression.StorageKey{k, randomKey(t)})
		return err == nil && recs[0] != nil && recs[1] == nil
	}, 10*time.Second, 10*time.Millisecond)
	rep.waitServing(t, 10*time.Second)
	require.EqualValues(t, 1, testutil.ToFloat64(rep.idx.m.loads.WithLabelValues("done")), "no reload after a cut")
	t.Logf("stalled index dropped from reads after %s", took.Round(time.Millisecond))
}

// gaugeNamed gathers one metric of the replica's registry.
func gaugeNamed(t testing.TB, rep *replica, name string) float64 {
	t.Helper()
	mfs, err := rep.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
