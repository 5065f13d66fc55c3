package schemas

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/suppressd/suppressd/suppression"
)

// FuzzDecode feeds arbitrary bytes to the decoder: it must never panic, and
// anything it accepts must survive an encode/decode round trip unchanged.
func FuzzDecode(f *testing.F) {
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
