package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	mrand "math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/benchmix"
	"github.com/suppressd/suppressd/suppression"
)

func randomRecord(rng *mrand.Rand) Record {
	types := suppression.EventTypes
	r := Record{
		Type:       types[rng.IntN(len(types))],
		Origin:     suppression.Origins[rng.IntN(len(suppression.Origins))],
		Namespace:  []string{"default", "brand-a", "x.y_z-1"}[rng.IntN(3)],
		Source:     []string{"/unsubscribe-link", "/hooks/sendgrid", strings.Repeat("s", 256)}[rng.IntN(3)],
		ID:         []string{"evt-1", "imp-0a1b2c", ""}[rng.IntN(3)],
		OccurredAt: time.UnixMilli(1_700_000_000_000 + rng.Int64N(1e9)).UTC(),
		Clamped:    rng.IntN(2) == 0,
		CampaignID: []string{"", "c-2026-11"}[rng.IntN(2)],
		ListID:     []string{"", "news"}[rng.IntN(2)],
	}
	r.Reference = r.OccurredAt.Add(time.Duration(rng.IntN(1000)) * time.Millisecond)
	if r.Type.Action() == suppression.ActionSuppress || r.Type == suppression.EventUnsuppress {
		r.Reason = suppression.Reasons[rng.IntN(len(suppression.Reasons))]
	}
	for range 1 + rng.IntN(4) {
		r.Scopes = append(r.Scopes, []suppression.Scope{"*", "email", "topic:newsletter", "advertising"}[rng.IntN(4)])
	}
	for range 1 + rng.IntN(8) {
		var k suppression.StorageKey
		for i := range k {
			k[i] = byte(rng.UintN(256))
		}
		r.Keys = append(r.Keys, k)
	}
	return r
}

func TestRoundTrip(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	for range 500 {
		r := randomRecord(rng)
		b, err := Encode(&r)
		require.NoError(t, err)
		got, err := Decode(b)
		require.NoError(t, err)
		require.Equal(t, r, got)
		again, err := Encode(&got)
		require.NoError(t, err)
		require.Equal(t, b, again)
	}
	g, err := Decode(EncodeGenesis(time.Now()))
	require.ErrorIs(t, err, ErrGenesis)
	require.Equal(t, Record{}, g)
}

func TestDecodeRejects(t *testing.T) {
	r := randomRecord(mrand.New(mrand.NewPCG(3, 4)))
	good, err := Encode(&r)
	require.NoError(t, err)
	for name, b := range map[string][]byte{
		"empty":          {},
		"other version":  append([]byte{2}, good[1:]...),
		"unknown kind":   append([]byte{Version, 9}, good[2:]...),
		"unknown type":   append(append([]byte{}, good[:2]...), append([]byte{99}, good[3:]...)...),
		"truncated":      good[:len(good)-5],
		"trailing bytes": append(append([]byte{}, good...), 0),
		"huge count":     append(good[:len(good)-32*len(r.Keys)-1], 0xff, 0xff, 0xff, 0x0f),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Decode(b)
			require.ErrorIs(t, err, ErrMalformed)
		})
	}
	_, err = Encode(&Record{Type: suppression.EventUnsubscribe, Origin: suppression.OriginRecipient})
	require.ErrorContains(t, err, "1 to 64 keys")
}

// TestNothingRawInARecord: a record made from an event with a real address
// and phone number holds none of their raw, normalised, digits-only or
// plainly hashed forms: only HMACs under the pepper.
func TestNothingRawInARecord(t *testing.T) {
	n := suppression.Normalizer{DefaultRegion: "US"}
	e := suppression.Event{ID: "evt-9", Source: "/test", Type: suppression.EventUnsubscribe, OccurredAt: time.Now(),
		Identifiers: []suppression.Identifier{{Type: suppression.IDEmail, Value: "Raw.Person+tag@Gmail.com"}, {Type: suppression.IDPhone, Value: "(650) 253-0000"}},
		Scopes:      []suppression.Scope{"email"}, Origin: suppression.OriginRecipient, Context: suppression.EventContext{MessageID: "<m1@mail.example.org>", CampaignID: "c1"}}
	require.NoError(t, e.Normalize(time.Now()))
	mks, err := n.Expand(e.Identifiers...)
	require.NoError(t, err)
	keyer := suppression.NewKeyer([]byte("ledger-test-pepper-16b"))
	r := FromEvent(&e, keyer.StorageKeys(nil, mks), time.Now())
	b, err := Encode(&r)
	require.NoError(t, err)
	forbidden := []string{"raw.person", "Raw.Person", "rawperson", "gmail", "6502530000", "+16502530000", "m1@mail", "@"}
	for _, mk := range mks {
		forbidden = append(forbidden, string(mk.Hash[:]), hex.EncodeToString(mk.Hash[:]))
	}
	plain := sha256.Sum256([]byte("raw.person+tag@gmail.com"))
	forbidden = append(forbidden, string(plain[:8]))
	for _, f := range forbidden {
		require.False(t, bytes.Contains(bytes.ToLower(b), bytes.ToLower([]byte(f))), "the record holds %q", f)
	}
	got, err := Decode(b)
	require.NoError(t, err)
	require.Equal(t, "c1", got.CampaignID)
	require.Len(t, got.Keys, len(mks))
	require.Equal(t, keyer.StorageKey(mks[0]), got.Keys[0])
	ws := got.AppendWrites(nil)
	require.Len(t, ws, len(mks))
	require.Equal(t, e.Change(), ws[0].Change, "the record's change is the event's")
}

func FuzzDecode(f *testing.F) {
	rng := mrand.New(mrand.NewPCG(5, 6))
	for range 8 {
		r := randomRecord(rng)
		b, _ := Encode(&r)
		f.Add(b)
	}
	f.Add(EncodeGenesis(time.Unix(0, 0)))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrGenesis) {
				t.Fatalf("an error that is neither malformed nor genesis: %v", err)
			}
			return
		}
		again, err := Encode(&r)
		if err != nil {
			t.Fatalf("a decoded record does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("decode/encode is not the identity")
		}
	})
}

// BenchmarkDecode decodes ledger records of the mix (internal/benchmix:
// 80 % emails, a third Gmail, 20 % phones) into the store's writes, as
// the apply stage and a rebuild do: what a record costs once its event has
// been validated and expanded at ingest, beside the CloudEvent decoding of
// schemas' BenchmarkDecode.
func BenchmarkDecode(b *testing.B) {
	var norm suppression.Normalizer
	keyer := suppression.NewKeyer([]byte("ledger-benchmark-pepper"))
	at := time.Now()
	var recs [][]byte
	for i := range 3000 {
		e, err := benchmix.Event(i, at)
		require.NoError(b, err)
		mks, err := norm.Expand(e.Identifiers...)
		require.NoError(b, err)
		r := FromEvent(&e, keyer.StorageKeys(nil, mks), at)
		raw, err := Encode(&r)
		require.NoError(b, err)
		recs = append(recs, raw)
	}
	var writes []suppression.Write
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := Decode(recs[i%len(recs)])
		if err != nil {
			b.Fatal(err)
		}
		writes = r.AppendWrites(writes[:0])
	}
}
