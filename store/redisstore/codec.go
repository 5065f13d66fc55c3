package redisstore

import (
	"encoding/binary"
	"fmt"

	"github.com/suppressd/suppressd/suppression"
)

// The record of one match key is one hash field whose value is:
//
//	u8 format (recordFormat)
//	entry*
//
// and an entry, one register of one scope, is:
//
//	u8 len, scope       ("*", "email", "topic:news", ...)
//	u8 kind             (0x80 for a lift, | reason code; 0x80 alone is a plain lift)
//	u8 origin code
//	u48 occurred_at     (Unix ms, big-endian)
//	u32 tag high, u32 tag low
//	source              (format 2: u8 len 0 to 239, then the source; or a
//	                    u8 code 240 to 255 naming a source of wellKnownSources.
//	                    Format 1: u8 len, then the source)
//
// The Lua script reads and writes the same layout (apply.lua), and the
// changes it is asked to apply travel as records too. Codes are part of the
// stored format: never renumber them, only append.
//
// Format 2 names the sources suppressd publishes itself by a byte: they are
// most opt-outs (the unsubscribe link above all), and a 17-byte source was
// the biggest part of a 37-byte record. Every build reads formats 1 and 2
// and writes 2, and the script rewrites a format-1 record it merges into as
// format 2, so records move over as they change (or at once, with a
// rebuild). A build that reads only format 1 refuses a format-2 record
// ("record format 2"): it fails closed, never misreads.
const recordFormat = 2

// oldestFormat is the oldest record format this build reads.
const oldestFormat = 1

// wellKnownSources are the sources format 2 stores as a code: the i-th is
// code sourceCode0+i. Part of the stored format: never reorder, only append
// (16 at most), and a new one needs a new format, so that an older build
// refuses a record it cannot read instead of misreading it.
var wellKnownSources = []string{
	// unsubscribe.DefaultSource and MailSource: the one-click link and its
	// pages, the mailto
	"/unsubscribe-link", "/unsubscribe-mailto",
	// importer.Format.Source
	"/import/ses", "/import/sendgrid", "/import/postmark", "/import/mailgun", "/import/csv",
	// webhook.Source
	"/hooks/sns", "/hooks/sendgrid", "/hooks/mailgun", "/hooks/postmark",
}

const sourceCode0 = 240

var sourceCodes = func() map[string]byte {
	m := make(map[string]byte, len(wellKnownSources))
	for i, s := range wellKnownSources {
		m[s] = byte(sourceCode0 + i)
	}
	return m
}()

const liftBit = 0x80

var reasonCodes = map[suppression.Reason]byte{
	suppression.ReasonUnsubscribe:      1,
	suppression.ReasonConsentWithdrawn: 2,
	suppression.ReasonObjection:        3,
	suppression.ReasonRestriction:      4,
	suppression.ReasonErasure:          5,
	suppression.ReasonComplaint:        6,
	suppression.ReasonHardBounce:       7,
	suppression.ReasonGPC:              8,
	suppression.ReasonMinor:            9,
	suppression.ReasonAdmin:            10,
	suppression.ReasonImport:           11,
}

var originCodes = map[suppression.Origin]byte{
	suppression.OriginRecipient: 1,
	suppression.OriginCustomer:  2,
	suppression.OriginAdmin:     3,
	suppression.OriginSystem:    4,
}

var (
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

// maxAt is the largest occurred_at a u48 holds (year 10889).
const maxAt = 1<<48 - 1

// maxSourceLen is the longest source kept; longer ones are cut (the full
// source stays on the ledger, the audit trail). Lengths above it are codes.
const maxSourceLen = sourceCode0 - 1

// entry is one register of one scope, as stored.
type entry struct {
	scope suppression.Scope
	reg   suppression.Register
}

func appendEntry(b []byte, scope suppression.Scope, r suppression.Register) ([]byte, error) {
	if len(scope) == 0 || len(scope) > 255 {
		return nil, fmt.Errorf("scope of %d bytes", len(scope))
	}
	var kind byte
	if r.Reason != "" {
		c, ok := reasonCodes[r.Reason]
		if !ok {
			return nil, fmt.Errorf("unknown reason %q", r.Reason)
		}
		kind = c
	}
	switch r.Action {
	case suppression.ActionLift:
		kind |= liftBit
	case suppression.ActionSuppress:
		if kind == 0 {
			return nil, fmt.Errorf("a suppression without a reason")
		}
	default:
		return nil, fmt.Errorf("unknown action %d", r.Action)
	}
	origin, ok := originCodes[r.Origin]
	if !ok {
		return nil, fmt.Errorf("unknown origin %q", r.Origin)
	}
	if r.Stamp.At < 0 || r.Stamp.At > maxAt {
		return nil, fmt.Errorf("occurred_at %d ms out of range", r.Stamp.At)
	}
	b = append(b, byte(len(scope)))
	b = append(b, scope...)
	b = append(b, kind, origin)
	at := uint64(r.Stamp.At)
	b = append(b, byte(at>>40), byte(at>>32), byte(at>>24), byte(at>>16), byte(at>>8), byte(at))
	b = binary.BigEndian.AppendUint64(b, r.Stamp.Tag)
	if code, ok := sourceCodes[r.Source]; ok {
		return append(b, code), nil
	}
	src := r.Source
	if len(src) > maxSourceLen {
		src = src[:maxSourceLen]
	}
	b = append(b, byte(len(src)))
	return append(b, src...), nil
}

// decodeEntries parses entries of a record of the given format until b is
// exhausted.
func decodeEntries(b []byte, format byte) ([]entry, error) {
	var out []entry
	for len(b) > 0 {
		n := int(b[0])
		if len(b) < 1+n+2+6+8+1 {
			return nil, fmt.Errorf("truncated entry")
		}
		scope := suppression.Scope(b[1 : 1+n])
		b = b[1+n:]
		kind, origin := b[0], b[1]
		at := int64(b[2])<<40 | int64(b[3])<<32 | int64(b[4])<<24 | int64(b[5])<<16 | int64(b[6])<<8 | int64(b[7])
		tag := binary.BigEndian.Uint64(b[8:16])
		sl := int(b[16])
		b = b[17:]
		r := suppression.Register{Action: suppression.ActionSuppress, Stamp: suppression.Stamp{At: at, Tag: tag}}
		if format >= 2 && sl >= sourceCode0 {
			if sl-sourceCode0 >= len(wellKnownSources) {
				return nil, fmt.Errorf("unknown source code %d", sl)
			}
			r.Source = wellKnownSources[sl-sourceCode0]
		} else {
			if len(b) < sl {
				return nil, fmt.Errorf("truncated source")
			}
			r.Source = string(b[:sl])
			b = b[sl:]
		}
		if kind&liftBit != 0 {
			r.Action = suppression.ActionLift
		}
		if code := kind &^ liftBit; code != 0 {
			reason, ok := reasonByCode[code]
			if !ok {
				return nil, fmt.Errorf("unknown reason code %d", code)
			}
			r.Reason = reason
		} else if r.Action == suppression.ActionSuppress {
			return nil, fmt.Errorf("a suppression without a reason")
		}
		o, ok := originByCode[origin]
		if !ok {
			return nil, fmt.Errorf("unknown origin code %d", origin)
		}
		r.Origin = o
		out = append(out, entry{scope: scope, reg: r})
	}
	return out, nil
}

// decodeRecord parses a stored value.
func decodeRecord(v []byte) (suppression.Record, error) {
	if len(v) == 0 {
		return nil, fmt.Errorf("empty record")
	}
	if v[0] < oldestFormat || v[0] > recordFormat {
		return nil, fmt.Errorf("record format %d, this build reads %d to %d", v[0], oldestFormat, recordFormat)
	}
	es, err := decodeEntries(v[1:], v[0])
	if err != nil {
		return nil, err
	}
	rec := make(suppression.Record, 1)
	for _, e := range es {
		rec[e.scope] = append(rec[e.scope], e.reg)
	}
	for _, st := range rec {
		st.Sort()
	}
	return rec, nil
}

// encodeEntries renders a record's registers as entries of the current
// format, without the format byte: the changes apply.lua is asked to fold
// in. n is how many.
func encodeEntries(rec suppression.Record) (b []byte, n int, err error) {
	for s, st := range rec {
		for _, r := range st {
			if b, err = appendEntry(b, s, r); err != nil {
				return nil, 0, err
			}
			n++
		}
	}
	return b, n, nil
}

// encodeRecord renders a record as stored, for tests and tools that write
// directly.
func encodeRecord(rec suppression.Record) ([]byte, error) {
	b, _, err := encodeEntries(rec)
	if err != nil {
		return nil, err
	}
	return append([]byte{recordFormat}, b...), nil
}
