// Package ledger is suppressd's log of record: for every valid intake event,
// one record holding what the store needs and nothing more. Storage keys
// (HMACs under the pepper), never an identifier's value; namespace, scopes,
// kind, reason, origin, source, event id, when the person acted and the
// event's reference time; of the context only the campaign and list ids.
// No free text (an unsuppress's justification stays on the intake topic).
//
// The ledger topic is kept for ever and is what the store is applied from,
// rebuilt from and audited from; the intake topics, which carry raw
// identifiers, need to be kept only until their events are ingested.
//
// Records are encoded in a compact, versioned binary form, documented in
// schemas/ledger/v1.md and decoded by Decode.
package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/suppressd/suppressd/suppression"
)

// Version is the encoding version written by Encode.
const Version = 1

// Record is the ledger's form of one event.
type Record struct {
	Type       suppression.EventType
	Reason     suppression.Reason // the suppression's reason; for an unsuppress, the one it overrides; empty on plain lifts
	Origin     suppression.Origin
	Namespace  string
	Scopes     []suppression.Scope
	Keys       []suppression.StorageKey // every match key of every identifier, under the pepper; Keys[0] is the primary
	Source     string
	ID         string
	OccurredAt time.Time // when the person acted, clamped to Reference
	Reference  time.Time // the time it was judged against (see suppression.Event.Normalize)
	Clamped    bool      // OccurredAt was brought back to Reference
	CampaignID string
	ListID     string
}

// FromEvent makes the record of a normalised event whose match keys are
// keys (already under the pepper), judged against ref.
func FromEvent(e *suppression.Event, keys []suppression.StorageKey, ref time.Time) Record {
	return Record{
		Type: e.Type, Reason: e.Reason, Origin: e.Origin, Namespace: e.Namespace,
		Scopes: append([]suppression.Scope(nil), e.Scopes...), Keys: append([]suppression.StorageKey(nil), keys...),
		Source: e.Source, ID: e.ID, OccurredAt: e.OccurredAt.Truncate(time.Millisecond).UTC(),
		Reference: ref.Truncate(time.Millisecond).UTC(), Clamped: e.Clamped,
		CampaignID: e.Context.CampaignID, ListID: e.Context.ListID,
	}
}

// Change is what the record does to each scope it names.
func (r *Record) Change() suppression.Change {
	return suppression.Change{Action: r.Type.Action(), Reason: r.Reason,
		Stamp: suppression.NewStamp(r.OccurredAt, r.Source, r.ID), Origin: r.Origin, Source: r.Source}
}

// AppendWrites appends the record's writes: its change, for every storage
// key and every scope.
func (r *Record) AppendWrites(dst []suppression.Write) []suppression.Write {
	ch := r.Change()
	for _, k := range r.Keys {
		for _, s := range r.Scopes {
			dst = append(dst, suppression.Write{Namespace: r.Namespace, Key: k, Scope: s, Change: ch})
		}
	}
	return dst
}

// GenesisKey is the Kafka key of the genesis record.
const GenesisKey = "genesis"

// Codes are part of the stored format: never renumber them, only append.
var (
	typeCodes = map[suppression.EventType]byte{
		suppression.EventUnsubscribe: 1, suppression.EventResubscribe: 2, suppression.EventConsentWithdrawn: 3,
		suppression.EventConsentGranted: 4, suppression.EventErasureRequested: 5, suppression.EventComplaint: 6,
		suppression.EventHardBounce: 7, suppression.EventGPC: 8, suppression.EventSuppress: 9, suppression.EventUnsuppress: 10,
	}
	reasonCodes = map[suppression.Reason]byte{
		suppression.ReasonUnsubscribe: 1, suppression.ReasonConsentWithdrawn: 2, suppression.ReasonObjection: 3,
		suppression.ReasonRestriction: 4, suppression.ReasonErasure: 5, suppression.ReasonComplaint: 6,
		suppression.ReasonHardBounce: 7, suppression.ReasonGPC: 8, suppression.ReasonMinor: 9,
		suppression.ReasonAdmin: 10, suppression.ReasonImport: 11,
	}
	originCodes = map[suppression.Origin]byte{
		suppression.OriginRecipient: 1, suppression.OriginCustomer: 2, suppression.OriginAdmin: 3, suppression.OriginSystem: 4,
	}
	typeByCode   = invert(typeCodes)
	reasonByCode = invert(reasonCodes)
	originByCode = invert(originCodes)
)

func invert[K comparable](m map[K]byte) map[byte]K {
	out := make(map[byte]K, len(m))
	for k, v := range m {
		out[v] = k
	}
	return out
}

// Record kinds.
const (
	kindEvent   = 0
	kindGenesis = 1
)

const flagClamped = 1

// Limits a record obeys; Decode refuses more.
const (
	maxString = 1024
	maxScopes = suppression.MaxScopes
	maxKeys   = 4 * suppression.MaxIdentifiers
)

// Encode renders a record.
func Encode(r *Record) ([]byte, error) {
	tc, ok := typeCodes[r.Type]
	if !ok {
		return nil, fmt.Errorf("unknown event type %q", r.Type)
	}
	var rc byte
	if r.Reason != "" {
		if rc, ok = reasonCodes[r.Reason]; !ok {
			return nil, fmt.Errorf("unknown reason %q", r.Reason)
		}
	}
	oc, ok := originCodes[r.Origin]
	if !ok {
		return nil, fmt.Errorf("unknown origin %q", r.Origin)
	}
	if len(r.Keys) == 0 || len(r.Keys) > maxKeys || len(r.Scopes) == 0 || len(r.Scopes) > maxScopes {
		return nil, fmt.Errorf("a record has 1 to %d keys and 1 to %d scopes, not %d and %d", maxKeys, maxScopes, len(r.Keys), len(r.Scopes))
	}
	var flags byte
	if r.Clamped {
		flags |= flagClamped
	}
	b := make([]byte, 0, 64+len(r.Source)+len(r.ID)+len(r.Namespace)+32*len(r.Keys))
	b = append(b, Version, kindEvent, tc, rc, oc, flags)
	b = binary.BigEndian.AppendUint64(b, uint64(r.OccurredAt.UnixMilli()))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Reference.UnixMilli()))
	for _, s := range []string{r.Namespace, r.Source, r.ID, r.CampaignID, r.ListID} {
		if len(s) > maxString {
			return nil, fmt.Errorf("a string of %d bytes: at most %d", len(s), maxString)
		}
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Scopes)))
	for _, s := range r.Scopes {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Keys)))
	for _, k := range r.Keys {
		b = append(b, k[:]...)
	}
	return b, nil
}

// EncodeGenesis renders the genesis record: written once, when the ledger
// starts complete (a new deployment, or a backfill that copied every
// earlier intake event). A rebuild trusts a ledger only if it has one.
func EncodeGenesis(at time.Time) []byte {
	return binary.BigEndian.AppendUint64([]byte{Version, kindGenesis}, uint64(at.UnixMilli()))
}

// ErrGenesis is returned by Decode for the genesis record.
var ErrGenesis = errors.New("genesis record")

// ErrMalformed wraps every decoding error.
var ErrMalformed = errors.New("malformed ledger record")

// Decode parses a record. The genesis record decodes to ErrGenesis.
func Decode(b []byte) (Record, error) {
	var r Record
	d := decoder{b: b}
	if v := d.byte(); v != Version {
		return r, fmt.Errorf("%w: version %d, this build reads %d", ErrMalformed, v, Version)
	}
	switch kind := d.byte(); kind {
	case kindEvent:
	case kindGenesis:
		d.u64()
		if d.err != nil || len(d.b) != 0 {
			return r, fmt.Errorf("%w: genesis", ErrMalformed)
		}
		return r, ErrGenesis
	default:
		return r, fmt.Errorf("%w: kind %d", ErrMalformed, kind)
	}
	tc, rc, oc, flags := d.byte(), d.byte(), d.byte(), d.byte()
	at, ref := int64(d.u64()), int64(d.u64())
	strs := make([]string, 5)
	for i := range strs {
		strs[i] = d.str()
	}
	ns := d.count(maxScopes)
	for range ns {
		r.Scopes = append(r.Scopes, suppression.Scope(d.str()))
	}
	nk := d.count(maxKeys)
	for range nk {
		var k suppression.StorageKey
		copy(k[:], d.take(32))
		r.Keys = append(r.Keys, k)
	}
	if d.err != nil {
		return Record{}, d.err
	}
	if len(d.b) != 0 {
		return Record{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.b))
	}
	var ok bool
	if r.Type, ok = typeByCode[tc]; !ok {
		return Record{}, fmt.Errorf("%w: type code %d", ErrMalformed, tc)
	}
	if rc != 0 {
		if r.Reason, ok = reasonByCode[rc]; !ok {
			return Record{}, fmt.Errorf("%w: reason code %d", ErrMalformed, rc)
		}
	}
	if r.Origin, ok = originByCode[oc]; !ok {
		return Record{}, fmt.Errorf("%w: origin code %d", ErrMalformed, oc)
	}
	if ns == 0 || nk == 0 {
		return Record{}, fmt.Errorf("%w: no scope or no key", ErrMalformed)
	}
	r.Clamped = flags&flagClamped != 0
	r.OccurredAt, r.Reference = time.UnixMilli(at).UTC(), time.UnixMilli(ref).UTC()
	r.Namespace, r.Source, r.ID, r.CampaignID, r.ListID = strs[0], strs[1], strs[2], strs[3], strs[4]
	return r, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated %s", ErrMalformed, what)
	}
	d.b = nil
}

func (d *decoder) take(n int) []byte {
	if d.err != nil || len(d.b) < n {
		d.fail("field")
		return make([]byte, n)
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}

func (d *decoder) byte() byte { return d.take(1)[0] }

func (d *decoder) u64() uint64 { return binary.BigEndian.Uint64(d.take(8)) }

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("length")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) count(limit int) int {
	n := d.uvarint()
	if n > uint64(limit) {
		if d.err == nil {
			d.err = fmt.Errorf("%w: a count of %d, at most %d", ErrMalformed, n, limit)
		}
		d.b = nil
		return 0
	}
	return int(n)
}

func (d *decoder) str() string {
	n := d.count(maxString)
	return string(d.take(n))
}
