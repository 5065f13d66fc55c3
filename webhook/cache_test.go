package webhook

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTTLSet(t *testing.T) {
	now := testNow
	s := newTTLSet(3, func() time.Time { return now })
	require.True(t, s.reserve("a", now.Add(time.Minute)))
	require.False(t, s.reserve("a", now.Add(time.Minute)), "held")
	s.release("a")
	require.True(t, s.reserve("a", now.Add(time.Minute)), "released")
	require.True(t, s.reserve("b", now.Add(time.Minute)))
	require.True(t, s.reserve("c", now.Add(time.Minute)))
	require.True(t, s.reserve("d", now.Add(time.Minute)))
	require.False(t, s.contains("a"), "the oldest goes first when full")
	require.True(t, s.contains("d"))
	now = now.Add(2 * time.Minute)
	require.False(t, s.contains("d"), "expired")
	require.True(t, s.reserve("d", now.Add(time.Minute)), "an expired key can be reserved again")
	for i := range 10_000 {
		s.reserve(string(rune('e'+i%3)), now.Add(time.Minute))
		s.release(string(rune('e' + i%3)))
	}
	require.LessOrEqual(t, len(s.queue), 2*3+64+1, "released keys do not grow the queue without bound")
}
