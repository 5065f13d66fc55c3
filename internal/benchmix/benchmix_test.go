package benchmix

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
)

// TestMix holds the mix to what the README's figures say it is: 80 %
// emails, a third of them Gmail, 20 % phones, 1.73 match keys per
// identifier, every identifier distinct and valid.
func TestMix(t *testing.T) {
	var n suppression.Normalizer
	const ids = 3000
	seen := map[suppression.Identifier]bool{}
	kinds := map[string]int{}
	keys := 0
	for i := range ids {
		id := Identifier(i)
		require.False(t, seen[id], "identifier %d repeats", i)
		seen[id] = true
		ks, err := n.Expand(id)
		require.NoError(t, err, "identifier %d", i)
		keys += len(ks)
		switch {
		case id.Type == suppression.IDPhone:
			kinds["phone"]++
			require.Len(t, ks, 2)
		case len(ks) == 1:
			kinds["email"]++
		default:
			kinds["gmail"]++
			require.Contains(t, []int{2, 4}, len(ks))
		}
		e, err := Event(i, time.Now())
		require.NoError(t, err)
		require.Equal(t, []suppression.Identifier{id}, e.Identifiers)
	}
	require.Equal(t, map[string]int{"phone": ids / 5, "email": ids * 4 / 5 * 2 / 3, "gmail": ids * 4 / 5 / 3}, kinds)
	require.InDelta(t, KeysPerIdentifier, float64(keys)/ids, 1e-9)
	require.InDelta(t, 1.7333, KeysPerIdentifier, 1e-4)
}
