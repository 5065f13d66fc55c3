package suppression

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

func sup(at int64, tag uint64, r Reason) Change {
	return Change{Action: ActionSuppress, Reason: r, Stamp: Stamp{At: at, Tag: tag}, Origin: OriginRecipient, Source: "test"}
}

func lift(at int64, tag uint64, r Reason) Change {
	return Change{Action: ActionLift, Reason: r, Stamp: Stamp{At: at, Tag: tag}, Origin: OriginAdmin, Source: "test"}
}

func applyAll(cs []Change) ScopeState {
	var s ScopeState
	for _, c := range cs {
		s, _ = s.Apply(c)
	}
	return s
}

func activeReasons(s ScopeState) []Reason {
	var out []Reason
	for _, r := range s.Active() {
		out = append(out, r.Reason)
	}
	return out
}

// reference computes the active reasons straight from the definition of the
// merge rule, with no incremental state: reason R is active when its newest
// suppression happened no earlier (in milliseconds) than every lift that
// applies to R.
func reference(cs []Change) map[Reason]bool {
	newest := func(pick func(Change) bool) (Stamp, bool) {
		var best Stamp
		ok := false
		for _, c := range cs {
			if pick(c) && (!ok || c.Stamp.Compare(best) > 0) {
				best, ok = c.Stamp, true
			}
		}
		return best, ok
	}
	active := map[Reason]bool{}
	for _, r := range Reasons {
		s, ok := newest(func(c Change) bool { return c.Action == ActionSuppress && c.Reason == r })
		if !ok {
			continue
		}
		l, lok := newest(func(c Change) bool {
			return c.Action == ActionLift && (c.Reason == r || c.Reason == "" && !r.Sticky())
		})
		if !lok || s.At >= l.At {
			active[r] = true
		}
	}
	return active
}

func permutations(n int, visit func([]int)) {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	var rec func(k int)
	rec = func(k int) {
		if k == n {
			visit(p)
			return
		}
		for i := k; i < n; i++ {
			p[k], p[i] = p[i], p[k]
			rec(k + 1)
			p[k], p[i] = p[i], p[k]
		}
	}
	rec(0)
}

func randomChanges(rng *rand.Rand, n int) []Change {
	// A small pool of reasons and times makes collisions (same register,
	// same millisecond) common, which is where merge rules break.
	reasons := []Reason{ReasonUnsubscribe, ReasonErasure, ReasonHardBounce, ReasonComplaint}
	cs := make([]Change, n)
	for i := range cs {
		at := int64(rng.IntN(4))
		tag := rng.Uint64N(3) + uint64(i)*8 // distinct events: distinct tags
		switch rng.IntN(3) {
		case 0, 1:
			cs[i] = sup(at, tag, reasons[rng.IntN(len(reasons))])
		default:
			r := Reason("")
			if rng.IntN(2) == 0 {
				r = reasons[rng.IntN(len(reasons))]
			}
			cs[i] = lift(at, tag, r)
		}
	}
	return cs
}

func TestMergeIsOrderIndependent(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 300; round++ {
		cs := randomChanges(rng, 1+rng.IntN(6))
		want := applyAll(cs)
		ref := reference(cs)
		got := map[Reason]bool{}
		for _, r := range activeReasons(want) {
			got[r] = true
		}
		require.Equal(t, ref, got, "round %d: state %v disagrees with the rule's definition for %v", round, want, cs)
		permutations(len(cs), func(p []int) {
			perm := make([]Change, len(cs))
			for i, j := range p {
				perm[i] = cs[j]
			}
			require.Equal(t, want, applyAll(perm), "round %d: order %v", round, p)
		})
	}
}

func TestMergeIsIdempotent(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := 0; round < 500; round++ {
		cs := randomChanges(rng, 1+rng.IntN(8))
		once := applyAll(cs)
		twice := applyAll(append(append([]Change{}, cs...), cs...))
		require.Equal(t, once, twice, "round %d", round)
		// Replaying any single event on the final state changes nothing.
		for _, c := range cs {
			again, changed := once.Apply(c)
			require.False(t, changed, "round %d: replaying %+v changed the state", round, c)
			require.Equal(t, once, again)
		}
	}
}

func TestMergeScenarios(t *testing.T) {
	tests := []struct {
		name    string
		changes []Change
		active  []Reason
	}{
		{"opt-out then lift", []Change{sup(5, 1, ReasonUnsubscribe), lift(10, 2, "")}, nil},
		{"lift then opt-out", []Change{lift(5, 1, ""), sup(10, 2, ReasonUnsubscribe)}, []Reason{ReasonUnsubscribe}},
		{"older opt-out arriving after a newer lift stays lifted", []Change{lift(10, 2, ""), sup(5, 1, ReasonUnsubscribe)}, nil},
		{"resubscribe never lifts erasure", []Change{sup(5, 1, ReasonErasure), lift(10, 2, "")}, []Reason{ReasonErasure}},
		// The case the issue calls out: a resubscribe at t=10 delivered
		// before an erasure at t=5 must still end suppressed.
		{"resubscribe delivered before an older erasure", []Change{lift(10, 2, ""), sup(5, 1, ReasonErasure)}, []Reason{ReasonErasure}},
		{"resubscribe never lifts restriction, complaint or minor", []Change{
			sup(1, 1, ReasonRestriction), sup(2, 2, ReasonComplaint), sup(3, 3, ReasonMinor), lift(10, 4, ""),
		}, []Reason{ReasonRestriction, ReasonMinor, ReasonComplaint}},
		{"admin unsuppress naming erasure lifts it", []Change{sup(5, 1, ReasonErasure), lift(10, 2, ReasonErasure)}, nil},
		{"admin unsuppress naming erasure lifts only erasure", []Change{
			sup(5, 1, ReasonErasure), sup(6, 3, ReasonComplaint), lift(10, 2, ReasonErasure),
		}, []Reason{ReasonComplaint}},
		{"admin unsuppress older than the erasure does nothing", []Change{lift(4, 2, ReasonErasure), sup(5, 1, ReasonErasure)}, []Reason{ReasonErasure}},
		{"plain lift lifts every non-sticky reason", []Change{
			sup(1, 1, ReasonUnsubscribe), sup(2, 2, ReasonHardBounce), sup(3, 3, ReasonGPC), lift(4, 4, ""),
		}, nil},
		{"non-sticky admin lift lifts only its reason", []Change{
			sup(1, 1, ReasonUnsubscribe), sup(2, 2, ReasonHardBounce), lift(4, 4, ReasonHardBounce),
		}, []Reason{ReasonUnsubscribe}},
		// Within the same millisecond the order is unknown: the opt-out
		// stays, whatever the tags (which order events of one kind only).
		{"same millisecond: the suppression wins", []Change{sup(5, 9, ReasonUnsubscribe), lift(5, 3, "")}, []Reason{ReasonUnsubscribe}},
		{"same millisecond, other tag order: still suppressed", []Change{sup(5, 3, ReasonUnsubscribe), lift(5, 9, "")}, []Reason{ReasonUnsubscribe}},
		{"same millisecond, lift delivered first", []Change{lift(5, 9, ""), sup(5, 3, ReasonUnsubscribe)}, []Reason{ReasonUnsubscribe}},
		{"same millisecond admin unsuppress of erasure: erasure stays", []Change{sup(5, 1, ReasonErasure), lift(5, 2, ReasonErasure)}, []Reason{ReasonErasure}},
		{"a millisecond later the lift wins", []Change{sup(5, 9, ReasonUnsubscribe), lift(6, 3, "")}, nil},
		{"several reasons, strongest first", []Change{sup(1, 1, ReasonUnsubscribe), sup(2, 2, ReasonErasure)}, []Reason{ReasonErasure, ReasonUnsubscribe}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := applyAll(tc.changes)
			require.Equal(t, tc.active, activeReasons(s))
			require.Equal(t, len(tc.active) > 0, s.Suppressed())
		})
	}
}

func TestLiftsAreKeptAsTombstones(t *testing.T) {
	s := applyAll([]Change{sup(5, 1, ReasonUnsubscribe), lift(10, 2, "")})
	require.Equal(t, ScopeState{Register(lift(10, 2, ""))}, s, "the dominated opt-out is dropped, the lift kept")
	s, changed := s.Apply(sup(7, 3, ReasonUnsubscribe))
	require.False(t, changed)
	require.False(t, s.Suppressed())
}

func TestApplyDoesNotModifyReceiver(t *testing.T) {
	s := applyAll([]Change{sup(5, 1, ReasonUnsubscribe), sup(6, 2, ReasonErasure)})
	before := fmt.Sprint(s)
	_, changed := s.Apply(lift(10, 3, ""))
	require.True(t, changed)
	require.Equal(t, before, fmt.Sprint(s))
}
