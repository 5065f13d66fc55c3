package schemas

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
)

// ref is the reference time the fixtures are judged against.
var ref = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func newValidator(t testing.TB) *Validator {
	v, err := New()
	require.NoError(t, err)
	return v
}

func fixtures(t *testing.T, dir string) map[string][]byte {
	paths, err := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		out[strings.TrimSuffix(filepath.Base(p), ".json")] = b
	}
	return out
}

func TestValidFixtures(t *testing.T) {
	v := newValidator(t)
	n := suppression.Normalizer{DefaultRegion: "US"}
	seen := map[suppression.EventType]bool{}
	for name, raw := range fixtures(t, "valid") {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, v.Validate(raw))
			d, err := v.Decode(raw, ref, n)
			require.NoError(t, err)
			require.NotEmpty(t, d.Keys)
			seen[d.Event.Type] = true
			// A time after the reference is kept, clamped to it.
			require.Equal(t, strings.Contains(name, "future"), d.Event.Clamped)
			require.False(t, d.Event.OccurredAt.After(ref))

			// Encoding the decoded event gives an event that decodes to the same thing.
			again, err := Encode(d.Event)
			require.NoError(t, err)
			d2, err := v.Decode(again, ref, n)
			require.NoError(t, err, string(again))
			d2.Event.Clamped = d.Event.Clamped // the re-encoded time is the clamped one
			require.Equal(t, d, d2)
		})
	}
	for _, typ := range suppression.EventTypes {
		require.True(t, seen[typ], "no valid fixture of type %s", typ)
	}
}

func TestInvalidFixtures(t *testing.T) {
	v := newValidator(t)
	var expected map[string][]string
	b, err := os.ReadFile("testdata/invalid_expected.json")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &expected))
	all := fixtures(t, "invalid")
	require.Len(t, all, len(expected), "every invalid fixture has its expected paths")
	for name, raw := range all {
		t.Run(name, func(t *testing.T) {
			want, ok := expected[name]
			require.True(t, ok, "no expectation for %s", name)
			_, err := v.Decode(raw, ref, suppression.Normalizer{DefaultRegion: "US"})
			require.Error(t, err)
			require.True(t, errors.Is(err, suppression.ErrInvalidEvent))
			var se *Error
			require.True(t, errors.As(err, &se))
			var paths []string
			for _, vi := range se.Violations {
				p := vi.Path
				if p == "" {
					p = "(root)"
				}
				if !contains(paths, p) {
					paths = append(paths, p)
				}
				require.NotEmpty(t, vi.Message)
			}
			require.ElementsMatch(t, want, paths, "violations: %v", se.Violations)
			// Nothing raw about the person in the error text.
			for _, secret := range []string{"alice", "Alice", "555"} {
				require.NotContains(t, err.Error(), secret)
			}
		})
	}
}

func TestValidationMessagesNameTheProblem(t *testing.T) {
	v := newValidator(t)
	raw, err := os.ReadFile("testdata/invalid/several_problems.json")
	require.NoError(t, err)
	err = v.Validate(raw)
	msg := err.Error()
	require.Contains(t, msg, "source")
	require.Contains(t, msg, "/data/origin")
	require.Contains(t, msg, "/data/identifiers/0/type")
}

func TestOversizedEvent(t *testing.T) {
	v := newValidator(t)
	big := []byte(`{"id":"` + strings.Repeat("x", MaxEventBytes) + `"}`)
	require.ErrorContains(t, v.Validate(big), "the limit is 65536")
}

func TestTypeNames(t *testing.T) {
	for _, typ := range suppression.EventTypes {
		got, ok := ParseTypeName(TypeName(typ))
		require.True(t, ok)
		require.Equal(t, typ, got)
		_, err := Files.ReadFile("events/v1/" + string(typ) + ".json")
		require.NoError(t, err, "a data schema for every event type")
	}
	for _, bad := range []string{"", "io.suppressd.unsubscribe", "io.suppressd.unsubscribe.v2", "com.example.unsubscribe.v1", "io.suppressd.teleport.v1"} {
		_, ok := ParseTypeName(bad)
		require.False(t, ok, bad)
	}
}

func TestDecodeKeys(t *testing.T) {
	v := newValidator(t)
	raw, err := os.ReadFile("testdata/valid/unsubscribe_namespace.json")
	require.NoError(t, err)
	d, err := v.Decode(raw, ref, suppression.Normalizer{})
	require.NoError(t, err)
	require.Equal(t, "brand-b", d.Event.Namespace)
	// The gmail address has 4 platform forms (dots and tag, each kept or
	// removed), the phone 2.
	require.Len(t, d.Keys, 6)
	n := suppression.Normalizer{}
	primary, err := n.Expand(suppression.Identifier{Type: suppression.IDEmail, Value: "alice.example+news@gmail.com"})
	require.NoError(t, err)
	require.Equal(t, primary[0], d.Keys[0], "the first key is the primary identifier's plain form")
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

func BenchmarkDecode(b *testing.B) {
	v := newValidator(b)
	raw, err := os.ReadFile("testdata/valid/unsubscribe.json")
	require.NoError(b, err)
	n := suppression.Normalizer{DefaultRegion: "US"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Decode(raw, ref, n); err != nil {
			b.Fatal(err)
		}
	}
}
