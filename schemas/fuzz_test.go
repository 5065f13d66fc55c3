package schemas

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/suppressd/suppressd/suppression"
)

// FuzzDecode feeds arbitrary bytes to the decoder: it must never panic, and
// anything it accepts must survive an encode/decode round trip unchanged.
func FuzzDecode(f *testing.F) {
	v := seedFixtures(f)
	n := suppression.Normalizer{DefaultRegion: "US"}
	f.Fuzz(func(t *testing.T, raw []byte) {
		d, err := v.Decode(raw, ref, n)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of type %T, want *Error: %v", err, err)
			}
			return
		}
		if len(d.Keys) == 0 {
			t.Fatal("a valid event without match keys")
		}
		enc, err := Encode(d.Event)
		if err != nil {
			t.Fatal(err)
		}
		d2, err := v.Decode(enc, ref, n)
		if err != nil {
			t.Fatalf("re-encoded event rejected: %v\n%s", err, enc)
		}
		if d2.Event.ID != d.Event.ID || len(d2.Keys) != len(d.Keys) || !d2.Event.OccurredAt.Equal(d.Event.OccurredAt) {
			t.Fatalf("round trip changed the event:\n%+v\n%+v", d, d2)
		}
	})
}

// FuzzFastPathAgrees holds the fast path to the schemas: whatever it
// accepts, the schema validator accepts, and the slow path decodes it to the
// same event and keys.
func FuzzFastPathAgrees(f *testing.F) {
	v := seedFixtures(f)
	n := suppression.Normalizer{DefaultRegion: "US"}
	f.Fuzz(func(t *testing.T, raw []byte) {
		fast, ok := v.fastDecode(raw, ref, n)
		if !ok {
			return
		}
		if err := v.Validate(raw); err != nil {
			t.Fatalf("fast path accepted what the schemas reject: %v\n%s", err, raw)
		}
		slow, err := v.slowDecode(raw, ref, n)
		if err != nil {
			t.Fatalf("fast path accepted what the slow path rejects: %v\n%s", err, raw)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("fast and slow paths disagree:\n%+v\n%+v", fast, slow)
		}
	})
}

// seedFixtures adds every valid and invalid fixture to the corpus and
// returns a validator.
func seedFixtures(f *testing.F) *Validator {
	for _, dir := range []string{"valid", "invalid"} {
		paths, _ := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	v, err := New()
	if err != nil {
		f.Fatal(err)
	}
	return v
}
