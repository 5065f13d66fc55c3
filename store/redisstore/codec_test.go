package redisstore

import (
	mrand "math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/store/storetest"
	"github.com/suppressd/suppressd/suppression"
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
	es, err := decodeEntries(long)
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
