package suppression

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func validEvent(typ EventType) Event {
	return Event{
		ID: "evt-1", Source: "unsubscribe-link", Type: typ, OccurredAt: t0,
		Identifiers: []Identifier{{IDEmail, "alice@example.org"}},
		Scopes:      []Scope{"email"}, Origin: OriginRecipient,
	}
}

func TestEventNormalizeDefaults(t *testing.T) {
	e := validEvent(EventErasureRequested)
	e.Scopes = nil
	require.NoError(t, e.Normalize(t0))
	require.Equal(t, []Scope{ScopeGlobal}, e.Scopes)
	require.Equal(t, ReasonErasure, e.Reason)
	require.Equal(t, DefaultNamespace, e.Namespace)

	g := validEvent(EventGPC)
	g.Scopes = nil
	require.NoError(t, g.Normalize(t0))
	require.Equal(t, []Scope{"sale_sharing", "advertising"}, g.Scopes)

	u := validEvent(EventUnsubscribe)
	u.Scopes = []Scope{"email", "email", "topic:news"}
	require.NoError(t, u.Normalize(t0))
	require.Equal(t, []Scope{"email", "topic:news"}, u.Scopes, "duplicates dropped")
	c := u.Change()
	require.Equal(t, ActionSuppress, c.Action)
	require.Equal(t, ReasonUnsubscribe, c.Reason)
	require.Equal(t, t0.UnixMilli(), c.Stamp.At)

	r := validEvent(EventResubscribe)
	require.NoError(t, r.Normalize(t0))
	require.Equal(t, ActionLift, r.Change().Action)
	require.Equal(t, Reason(""), r.Change().Reason)
}

func TestEventNormalizeRejects(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Event)
		want   []string
	}{
		{"no id", func(e *Event) { e.ID = "" }, []string{"id: must be 1 to 256 characters"}},
		{"no source", func(e *Event) { e.Source = "" }, []string{"source: must be"}},
		{"unknown type", func(e *Event) { e.Type = "teleport" }, []string{`type: unknown event type "teleport"`}},
		{"no time", func(e *Event) { e.OccurredAt = time.Time{} }, []string{"time: required"}},
		{"no identifiers", func(e *Event) { e.Identifiers = nil }, []string{"data.identifiers: at least one"}},
		{"unknown identifier type", func(e *Event) { e.Identifiers[0].Type = "fax" }, []string{`data.identifiers[0].type: unknown identifier type "fax"`}},
		{"no scopes on unsubscribe", func(e *Event) { e.Scopes = nil }, []string{"data.scopes: required for unsubscribe events"}},
		{"bad scope", func(e *Event) { e.Scopes = []Scope{"email", "everything"} }, []string{`data.scopes[1]: unknown scope "everything"`}},
		{"bad namespace", func(e *Event) { e.Namespace = "Acme Corp" }, []string{"data.namespace: name"}},
		{"bad origin", func(e *Event) { e.Origin = "martian" }, []string{`data.origin: unknown origin "martian"`}},
		{"reason contradicts type", func(e *Event) { e.Reason = ReasonErasure }, []string{`data.reason: a unsubscribe event cannot carry reason "erasure"`}},
		{"several at once", func(e *Event) { e.ID = ""; e.Scopes = nil }, []string{"id:", "data.scopes:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := validEvent(EventUnsubscribe)
			tc.mutate(&e)
			err := e.Normalize(t0)
			require.Error(t, err)
			require.True(t, errors.Is(err, ErrInvalidEvent))
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
			var ee *EventError
			require.True(t, errors.As(err, &ee))
			require.Len(t, ee.Problems, len(tc.want))
		})
	}
	t.Run("suppress needs a reason", func(t *testing.T) {
		e := validEvent(EventSuppress)
		require.ErrorContains(t, e.Normalize(t0), `data.reason: unknown reason ""`)
		e.Reason = ReasonObjection
		require.NoError(t, e.Normalize(t0))
	})
	t.Run("unsuppress needs admin, overrides and justification", func(t *testing.T) {
		e := validEvent(EventUnsuppress)
		err := e.Normalize(t0)
		for _, w := range []string{"data.overrides", "data.origin: an unsuppress must come from an admin", "data.justification: required"} {
			require.ErrorContains(t, err, w)
		}
		e.Origin, e.Reason, e.Justification = OriginAdmin, ReasonErasure, "erasure request was withdrawn in ticket 4411"
		require.NoError(t, e.Normalize(t0))
		c := e.Change()
		require.Equal(t, ActionLift, c.Action)
		require.Equal(t, ReasonErasure, c.Reason)
	})
	t.Run("erasure must be global", func(t *testing.T) {
		e := validEvent(EventErasureRequested)
		require.ErrorContains(t, e.Normalize(t0), `an erasure covers everything`)
	})
	t.Run("events judged against a zero reference skip the skew check", func(t *testing.T) {
		e := validEvent(EventUnsubscribe)
		e.OccurredAt = time.Now().Add(24 * time.Hour)
		require.NoError(t, e.Normalize(time.Time{}))
	})
}

func TestStamp(t *testing.T) {
	a := NewStamp(t0, "src", "1")
	require.Equal(t, a, NewStamp(t0, "src", "1"), "deterministic")
	require.NotEqual(t, a.Tag, NewStamp(t0, "src", "2").Tag)
	require.NotEqual(t, a.Tag, NewStamp(t0, "other", "1").Tag, "the source is part of an event's identity")
	require.Equal(t, 1, NewStamp(t0.Add(time.Millisecond), "src", "1").Compare(a))
	require.Equal(t, 0, a.Compare(a))
	require.Equal(t, t0, a.Time())
	require.False(t, strings.Contains(a.Time().String(), "Local"))
}

// TestFutureTimesAreClamped: an event that claims to have happened after its
// reference time is kept, dated at the reference time: an opt-out is never
// dropped for its clock, and a lift can never outvote what follows it.
func TestFutureTimesAreClamped(t *testing.T) {
	for _, typ := range []EventType{EventUnsubscribe, EventResubscribe, EventErasureRequested} {
		t.Run(string(typ), func(t *testing.T) {
			e := validEvent(typ)
			if typ == EventErasureRequested {
				e.Scopes = nil
			}
			e.OccurredAt = t0.Add(time.Hour)
			require.NoError(t, e.Normalize(t0))
			require.True(t, e.Clamped)
			require.Equal(t, t0, e.OccurredAt)
			require.Equal(t, t0.UnixMilli(), e.Change().Stamp.At)

			honest := validEvent(typ)
			if typ == EventErasureRequested {
				honest.Scopes = nil
			}
			honest.OccurredAt = t0.Add(-time.Second)
			require.NoError(t, honest.Normalize(t0))
			require.False(t, honest.Clamped)
			require.Equal(t, t0.Add(-time.Second), honest.OccurredAt)
		})
	}
}
