package suppression

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
)

// EventType is what happened. The wire names (CloudEvents `type`) live in
// package schemas; these are the domain's.
type EventType string

// Event types.
const (
	EventUnsubscribe      EventType = "unsubscribe"
	EventResubscribe      EventType = "resubscribe"
	EventConsentWithdrawn EventType = "consent_withdrawn"
	EventConsentGranted   EventType = "consent_granted"
	EventErasureRequested EventType = "erasure_requested"
	EventComplaint        EventType = "complaint"
	EventHardBounce       EventType = "hard_bounce"
	EventGPC              EventType = "gpc"
	EventSuppress         EventType = "suppress"   // any reason, named in the event (objection, restriction, minor, import, admin, ...)
	EventUnsuppress       EventType = "unsuppress" // admin only: lifts the one reason it names, sticky or not
)

// EventTypes lists every event type.
var EventTypes = []EventType{
	EventUnsubscribe, EventResubscribe, EventConsentWithdrawn, EventConsentGranted,
	EventErasureRequested, EventComplaint, EventHardBounce, EventGPC, EventSuppress, EventUnsuppress,
}

// Action is what an event does to the scopes it names.
type Action uint8

// Actions.
const (
	ActionSuppress Action = 1
	ActionLift     Action = 2
)

func (a Action) String() string {
	switch a {
	case ActionSuppress:
		return "suppress"
	case ActionLift:
		return "lift"
	}
	return "unknown"
}

// Action returns what events of this type do.
func (t EventType) Action() Action {
	switch t {
	case EventResubscribe, EventConsentGranted, EventUnsuppress:
		return ActionLift
	case "":
		return 0
	}
	if t.Valid() {
		return ActionSuppress
	}
	return 0
}

// Valid reports whether t is a known event type.
func (t EventType) Valid() bool { return slices.Contains(EventTypes, t) }

// ImpliedReason is the reason an event type carries by itself; empty for
// lifts and for the generic suppress and unsuppress, whose events name one.
func (t EventType) ImpliedReason() Reason {
	switch t {
	case EventUnsubscribe:
		return ReasonUnsubscribe
	case EventConsentWithdrawn:
		return ReasonConsentWithdrawn
	case EventErasureRequested:
		return ReasonErasure
	case EventComplaint:
		return ReasonComplaint
	case EventHardBounce:
		return ReasonHardBounce
	case EventGPC:
		return ReasonGPC
	}
	return ""
}

// DefaultScopes are the scopes of an event that names none; nil means the
// event must name its scopes. An erasure covers everything; a GPC signal is an
// opt-out of sale/sharing and of targeted advertising (CCPA regulations).
func (t EventType) DefaultScopes() []Scope {
	switch t {
	case EventErasureRequested:
		return []Scope{ScopeGlobal}
	case EventGPC:
		return []Scope{PurposeScope(PurposeSaleSharing), PurposeScope(PurposeAdvertising)}
	}
	return nil
}

// Event is one fact about a person's choices, as the domain sees it once the
// envelope is decoded.
type Event struct {
	ID          string    // unique within Source (CloudEvents id)
	Source      string    // the system that published it (CloudEvents source)
	Type        EventType //
	OccurredAt  time.Time // when the person acted, not when we heard of it
	Namespace   string    // tenant or brand; DefaultNamespace when empty
	Identifiers []Identifier
	Scopes      []Scope
	// Reason is the suppression's reason for suppress events, and the reason
	// being overridden for an unsuppress. Empty for plain lifts.
	Reason        Reason
	Origin        Origin
	Justification string // required on unsuppress: why an operator lifts it
	Context       EventContext
	// Clamped is set by Normalize when OccurredAt claimed a time after the
	// event's reference time and was brought back to it.
	Clamped bool
}

// EventContext says where an event came from, for the audit trail. None of
// it identifies a person.
type EventContext struct {
	CampaignID string `json:"campaign_id,omitempty"`
	ListID     string `json:"list_id,omitempty"`
	MessageID  string `json:"message_id,omitempty"`
	RequestID  string `json:"request_id,omitempty"` // the publisher's idempotency key
}

// Limits on an event.
const (
	MaxIdentifiers = 16
	MaxScopes      = 16
	MaxIDLen       = 256
)

// ErrInvalidEvent is wrapped by every event validation error.
var ErrInvalidEvent = errors.New("invalid event")

// EventError lists what is wrong with an event, one entry per field.
type EventError struct {
	Problems []FieldProblem
}

// FieldProblem names a field and what is wrong with it.
type FieldProblem struct {
	Field   string
	Message string
}

func (e *EventError) Error() string {
	s := "invalid event:"
	for i, p := range e.Problems {
		if i > 0 {
			s += ";"
		}
		s += " " + p.Field + ": " + p.Message
	}
	return s
}

// Unwrap makes errors.Is(err, ErrInvalidEvent) hold.
func (e *EventError) Unwrap() error { return ErrInvalidEvent }

// Normalize fills the defaults (namespace, scopes, implied reason) and checks
// every rule of the domain, returning all problems at once. Identifier values
// are checked by Normalizer.Expand, not here.
//
// ref is the event's reference time, one its producer does not control:
// when suppressd first reads the event from Kafka (bounded by the message's
// timestamp), or the server's clock when suppressd publishes it itself. An
// event may not claim to have happened after it: last writer wins, so one
// lift stamped an hour ahead would outvote every honest opt-out of that
// hour. Such a time is clamped to ref and the event kept (Clamped is set):
// an opt-out is never dropped for its timestamp, and a lift can never be
// dated after its reference time. A zero ref judges nothing.
func (e *Event) Normalize(ref time.Time) error {
	var ps []FieldProblem
	bad := func(field, format string, args ...any) {
		ps = append(ps, FieldProblem{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if e.ID == "" || len(e.ID) > MaxIDLen {
		bad("id", "must be 1 to %d characters", MaxIDLen)
	}
	if e.Source == "" || len(e.Source) > MaxIDLen {
		bad("source", "must be 1 to %d characters", MaxIDLen)
	}
	if !e.Type.Valid() {
		bad("type", "unknown event type %q", e.Type)
	}
	if e.OccurredAt.IsZero() {
		bad("time", "required: when the person acted")
	} else if !ref.IsZero() && e.OccurredAt.After(ref) {
		e.OccurredAt, e.Clamped = ref, true
	}
	if e.Namespace == "" {
		e.Namespace = DefaultNamespace
	} else if err := CheckName(e.Namespace); err != nil {
		bad("data.namespace", "%v", err)
	}
	switch n := len(e.Identifiers); {
	case n == 0:
		bad("data.identifiers", "at least one identifier is required")
	case n > MaxIdentifiers:
		bad("data.identifiers", "at most %d identifiers, got %d", MaxIdentifiers, n)
	}
	for i, id := range e.Identifiers {
		if !id.Type.Valid() {
			bad(fmt.Sprintf("data.identifiers[%d].type", i), "unknown identifier type %q", id.Type)
		}
	}
	if len(e.Scopes) == 0 {
		e.Scopes = e.Type.DefaultScopes()
		if e.Scopes == nil && e.Type.Valid() {
			bad("data.scopes", "required for %s events", e.Type)
		}
	}
	if len(e.Scopes) > MaxScopes {
		bad("data.scopes", "at most %d scopes, got %d", MaxScopes, len(e.Scopes))
	}
	for i, s := range e.Scopes {
		if _, err := ParseScope(string(s)); err != nil {
			bad(fmt.Sprintf("data.scopes[%d]", i), "%v", err)
		}
	}
	e.Scopes = dedupe(e.Scopes)
	if _, err := ParseOrigin(string(e.Origin)); err != nil {
		bad("data.origin", "%v", err)
	}
	switch e.Type {
	case EventSuppress:
		if _, err := ParseReason(string(e.Reason)); err != nil {
			bad("data.reason", "%v", err)
		}
	case EventUnsuppress:
		if _, err := ParseReason(string(e.Reason)); err != nil {
			bad("data.overrides", "%v", err)
		}
		if e.Origin != OriginAdmin {
			bad("data.origin", "an unsuppress must come from an admin")
		}
		if e.Justification == "" {
			bad("data.justification", "required: say why the suppression is lifted")
		}
	default:
		implied := e.Type.ImpliedReason()
		if e.Reason != "" && e.Reason != implied {
			bad("data.reason", "a %s event cannot carry reason %q", e.Type, e.Reason)
		}
		e.Reason = implied
	}
	if e.Type == EventErasureRequested && (len(e.Scopes) != 1 || e.Scopes[0] != ScopeGlobal) {
		bad("data.scopes", `an erasure covers everything: scopes must be ["*"] or omitted`)
	}
	if ps != nil {
		return &EventError{Problems: ps}
	}
	return nil
}

func dedupe(ss []Scope) []Scope {
	out := ss[:0:0]
	for _, s := range ss {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// Stamp orders events for last-writer-wins: by the time the person acted, in
// milliseconds, then by a tag derived from the event's source and id, so two
// events at the same millisecond order the same way on every consumer.
type Stamp struct {
	At  int64  // Unix milliseconds of occurred_at
	Tag uint64 // first 8 bytes, big-endian, of SHA-256(source NUL id)
}

// NewStamp returns the stamp of an event.
func NewStamp(occurredAt time.Time, source, id string) Stamp {
	h := sha256.New()
	h.Write([]byte(source))
	h.Write([]byte{0})
	h.Write([]byte(id))
	var d [32]byte
	h.Sum(d[:0])
	return Stamp{At: occurredAt.UnixMilli(), Tag: binary.BigEndian.Uint64(d[:8])}
}

// Stamp returns the event's stamp.
func (e *Event) Stamp() Stamp { return NewStamp(e.OccurredAt, e.Source, e.ID) }

// Compare orders stamps: -1, 0 or +1.
func (s Stamp) Compare(o Stamp) int {
	switch {
	case s.At < o.At:
		return -1
	case s.At > o.At:
		return 1
	case s.Tag < o.Tag:
		return -1
	case s.Tag > o.Tag:
		return 1
	}
	return 0
}

// Time returns the stamp's occurred_at.
func (s Stamp) Time() time.Time { return time.UnixMilli(s.At).UTC() }

// Change is what one event does to one scope of one match key.
type Change struct {
	Action Action
	Reason Reason // empty on a plain lift
	Stamp  Stamp
	Origin Origin
	Source string
}

// Change returns what the (normalised) event does to each scope it names.
func (e *Event) Change() Change {
	return Change{Action: e.Type.Action(), Reason: e.Reason, Stamp: e.Stamp(), Origin: e.Origin, Source: e.Source}
}
