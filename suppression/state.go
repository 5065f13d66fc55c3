package suppression

import (
	"cmp"
	"slices"
)

// Register is the latest event of one kind seen for one (match key, scope):
// the newest suppression for a reason, the newest plain lift (Reason empty),
// or the newest admin lift of a reason.
type Register struct {
	Action Action
	Reason Reason
	Stamp  Stamp
	Origin Origin
	Source string
}

// ScopeState is everything known about one storage key in one scope: a set
// of registers, each the maximum (by Stamp) of the events of its kind.
//
// The merge rule. A suppression for reason R is active when it happened no
// earlier than every lift that applies to R: the newest plain lift
// (resubscribe, consent granted) when R is not sticky, and the newest admin
// unsuppress that names R. Suppressions and lifts are compared by the time
// the person acted alone, and within the same millisecond the suppression
// wins: when the order cannot be known, the answer that keeps the opt-out.
// Because every register only ever moves to a newer stamp, the state is a
// join of the events seen: any order, any duplication and any replay of the
// same set of events gives the same state. Registers that can never matter
// again (a suppression older than a lift of it, an admin lift no newer than
// the plain lift of a non-sticky reason) are dropped, so a suppression
// register in the state is always active; lift registers stay as tombstones
// so that an older opt-out arriving late cannot resurrect.
//
// The state is kept sorted (suppressions first, then by reason) so equal
// states compare equal. The zero value is the empty state. The store runs the
// same rule in Lua; the two are tested against each other.
type ScopeState []Register

func registerOrder(a, b Register) int {
	if c := cmp.Compare(a.Action, b.Action); c != 0 {
		return c
	}
	return cmp.Compare(a.Reason, b.Reason)
}

func (s ScopeState) find(a Action, r Reason) int {
	for i := range s {
		if s[i].Action == a && s[i].Reason == r {
			return i
		}
	}
	return -1
}

// liftedAt reports whether a lift that applies to reason r happened after
// at (a suppression at the same millisecond as its lift stays).
func (s ScopeState) liftedAt(r Reason, at int64) bool {
	if i := s.find(ActionLift, r); i >= 0 && s[i].Stamp.At > at {
		return true
	}
	if !r.Sticky() {
		if i := s.find(ActionLift, ""); i >= 0 && s[i].Stamp.At > at {
			return true
		}
	}
	return false
}

// Apply folds a change into the state and returns the new state and whether
// anything changed. The receiver is not modified.
func (s ScopeState) Apply(c Change) (ScopeState, bool) {
	if i := s.find(c.Action, c.Reason); i >= 0 && s[i].Stamp.Compare(c.Stamp) >= 0 {
		return s, false // a newer (or the same) event of this kind is already held
	}
	switch c.Action {
	case ActionSuppress:
		if s.liftedAt(c.Reason, c.Stamp.At) {
			return s, false // lifted by a later event: an old opt-out arriving late
		}
	case ActionLift:
		if c.Reason != "" && !c.Reason.Sticky() {
			if i := s.find(ActionLift, ""); i >= 0 && s[i].Stamp.At >= c.Stamp.At {
				return s, false // the plain lift, no older, already covers this reason
			}
		}
	default:
		return s, false
	}
	next := make(ScopeState, 0, len(s)+1)
	for _, r := range s {
		if r.Action == c.Action && r.Reason == c.Reason {
			continue // replaced below
		}
		if c.Action == ActionLift && dominates(c, r) {
			continue
		}
		next = append(next, r)
	}
	next = append(next, Register(c))
	slices.SortFunc(next, registerOrder)
	return next, true
}

// dominates reports whether the lift l makes register r obsolete: a
// suppression it lifts that happened strictly before it, or, for a plain
// lift, an admin lift of a non-sticky reason that is no newer.
func dominates(l Change, r Register) bool {
	if r.Action == ActionSuppress {
		lifts := l.Reason == r.Reason || l.Reason == "" && !r.Reason.Sticky()
		return lifts && l.Stamp.At > r.Stamp.At
	}
	return l.Reason == "" && r.Reason != "" && !r.Reason.Sticky() && l.Stamp.At >= r.Stamp.At
}

// Active returns the suppressions in force, strongest reason first.
func (s ScopeState) Active() []Register {
	var out []Register
	for _, r := range s {
		if r.Action == ActionSuppress {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b Register) int { return cmp.Compare(a.Reason.rank(), b.Reason.rank()) })
	return out
}

// Suppressed reports whether any suppression is in force.
func (s ScopeState) Suppressed() bool {
	for _, r := range s {
		if r.Action == ActionSuppress {
			return true
		}
	}
	return false
}

// Sort puts the registers in the canonical order Apply keeps them in, for a
// state read back from storage.
func (s ScopeState) Sort() { slices.SortFunc(s, registerOrder) }
