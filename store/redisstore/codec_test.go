package redisstore

import (
	mrand "math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/importer"
	"github.com/suppressd/suppressd/store/storetest"
	"github.com/suppressd/suppressd/suppression"
	"github.com/suppressd/suppressd/unsubscribe"
	"github.com/suppressd/suppressd/webhook"
)

func TestCodecRoundTrip(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(5, 6))
	for round := 0; round < 200; round++ {
		want := storetest.Expected(storetest.RandomWrites(rng, "default", 1+rng.IntN(20), 1))["default"]
		for _, rec := range want {
			b, err := encodeRecord(rec)
			require.NoError(t, err)
			got, err := decodeRecord(b)
			require.NoError(t, err)
			require.Equal(t, rec, got)
		}
	}
}

func TestCodecRejects(t *testing.T) {
	good, err := encodeRecord(suppression.Record{"*": {{Action: suppression.ActionSuppress, Reason: suppression.ReasonUnsubscribe, Origin: suppression.OriginRecipient, Source: "s"}}})
	require.NoError(t, err)
	for name, b := range map[string][]byte{
		"empty":          {},
		"future format":  append([]byte{9}, good[1:]...),
		"format 0":       append([]byte{0}, good[1:]...),
		"truncated":      good[:len(good)-3],
		"unknown reason": func() []byte { c := append([]byte(nil), good...); c[3] = 99; return c }(),
	} {
		_, err := decodeRecord(b)
		require.Error(t, err, name)
	}
	_, err = appendEntry(nil, "*", suppression.Register{Action: suppression.ActionSuppress, Origin: suppression.OriginRecipient})
	require.ErrorContains(t, err, "without a reason")
	_, err = appendEntry(nil, "*", suppression.Register{Action: suppression.ActionLift, Origin: "martian"})
	require.ErrorContains(t, err, "unknown origin")
	long, err := appendEntry(nil, "*", suppression.Register{Action: suppression.ActionLift, Origin: suppression.OriginAdmin, Source: strings.Repeat("s", 300)})
	require.NoError(t, err)
	es, err := decodeEntries(long, recordFormat)
	require.NoError(t, err)
	require.Len(t, es[0].reg.Source, maxSourceLen)
}

// TestEveryCodeIsMapped guards the stored format: every reason and origin
// of the domain has a code, and codes are distinct.
func TestEveryCodeIsMapped(t *testing.T) {
	require.Len(t, reasonCodes, len(suppression.Reasons))
	require.Len(t, reasonByCode, len(suppression.Reasons))
	require.Len(t, originCodes, len(suppression.Origins))
	require.Len(t, originByCode, len(suppression.Origins))
	for code := range reasonByCode {
		require.Less(t, code, byte(liftBit))
	}
}

// appendEntryV1 writes an entry as format 1 did: the source always as a
// length and its bytes (up to 255). Kept to test that format-1 records
// written before format 2 are still read and merged.
func appendEntryV1(t *testing.T, b []byte, scope suppression.Scope, r suppression.Register) []byte {
	t.Helper()
	e, err := appendEntry(nil, scope, suppression.Register{Action: r.Action, Reason: r.Reason, Stamp: r.Stamp, Origin: r.Origin, Source: "x"})
	require.NoError(t, err)
	e = e[:len(e)-2] // everything before the source
	src := r.Source[:min(len(r.Source), 255)]
	return append(append(append(b, e...), byte(len(src))), src...)
}

// TestFormat2 holds format 2 to its promises: suppressd's own sources cost
// one byte, every other source is kept as it is (cut at 239 bytes), every
// format-1 record still reads as it did, and a code this build does not
// know is refused rather than misread.
func TestFormat2(t *testing.T) {
	reg := func(src string) suppression.Register {
		return suppression.Register{Action: suppression.ActionSuppress, Reason: suppression.ReasonUnsubscribe,
			Stamp: suppression.Stamp{At: 1_700_000_000_000, Tag: 42}, Origin: suppression.OriginRecipient, Source: src}
	}
	for _, src := range wellKnownSources {
		b, err := appendEntry(nil, "*", reg(src))
		require.NoError(t, err)
		require.Len(t, b, 1+1+1+1+6+8+1, "%s is one byte", src)
		got, err := decodeRecord(append([]byte{recordFormat}, b...))
		require.NoError(t, err)
		require.Equal(t, suppression.Record{"*": {reg(src)}}, got)
	}
	for _, src := range []string{"", "/unsubscribe-link/x", "https://cmp.example.com/consent", strings.Repeat("s", 239)} {
		b, err := appendEntry(nil, "*", reg(src))
		require.NoError(t, err)
		require.Len(t, b, 1+1+1+1+6+8+1+len(src))
	}
	long, err := appendEntry(nil, "*", reg(strings.Repeat("s", 250)))
	require.NoError(t, err)
	got, err := decodeRecord(append([]byte{recordFormat}, long...))
	require.NoError(t, err)
	require.Equal(t, strings.Repeat("s", 239), got["*"][0].Source)

	// Format 1: sources of any length up to 255, the well-known ones
	// spelled out.
	v1 := []byte{1}
	for _, src := range []string{"/unsubscribe-link", strings.Repeat("s", 250), "urn:dsr"} {
		v1 = appendEntryV1(t, v1, suppression.Scope("topic:"+src[:3]), reg(src))
	}
	got, err = decodeRecord(v1)
	require.NoError(t, err)
	require.Equal(t, suppression.Record{"topic:/un": {reg("/unsubscribe-link")}, "topic:sss": {reg(strings.Repeat("s", 250))}, "topic:urn": {reg("urn:dsr")}}, got)

	unknown, err := appendEntry(nil, "*", reg(wellKnownSources[0]))
	require.NoError(t, err)
	unknown[len(unknown)-1] = 255
	_, err = decodeRecord(append([]byte{recordFormat}, unknown...))
	require.ErrorContains(t, err, "unknown source code 255")
	// The same byte in a format-1 record is a length.
	_, err = decodeRecord(append([]byte{1}, unknown...))
	require.ErrorContains(t, err, "truncated source")
}

// TestWellKnownSourcesAreSuppressds: the sources format 2 writes as a byte
// are the ones suppressd's own publishers use, so the opt-outs it makes
// itself are the small ones. (A source renamed there would still be
// stored, spelled out; this keeps the table from going stale.)
func TestWellKnownSourcesAreSuppressds(t *testing.T) {
	own := []string{unsubscribe.DefaultSource, unsubscribe.MailSource}
	for _, f := range importer.Formats {
		own = append(own, f.Source())
	}
	for _, p := range webhook.Providers {
		own = append(own, webhook.Source(p))
	}
	require.Equal(t, own, wellKnownSources)
	require.LessOrEqual(t, len(wellKnownSources), 256-sourceCode0)
}
