package suppression

import (
	"strings"
	"testing"
)

// The fuzz targets check more than "no panic": a normalised value must
// normalise to itself (the rules are idempotent, or keys would drift between
// a raw unsubscribe and a later check), and match keys must be stable.

func FuzzNormalizeEmail(f *testing.F) {
	for _, s := range []string{"cloudy.sanfrancisco+shopping@gmail.com", "user.name+NYC@Example.com", " a@b ", "@", "a@@b", "\"q@x\"@example.org", "+@gmail.com", "ä@ü.de", "a@b..c"} {
		f.Add(s)
	}
	n := Normalizer{}
	f.Fuzz(func(t *testing.T, raw string) {
		e, err := NormalizeEmail(raw)
		if err != nil {
			return
		}
		again, err := NormalizeEmail(e.String())
		if err != nil || again != e {
			t.Fatalf("not idempotent: %q -> %q -> %q (%v)", raw, e, again, err)
		}
		keys, err := n.Expand(Identifier{IDEmail, raw})
		if err != nil || len(keys) == 0 || len(keys) > 4 {
			t.Fatalf("expand: %d keys, %v", len(keys), err)
		}
		vs, err := n.Variants(Identifier{IDEmail, raw})
		if err != nil || len(vs) != len(keys) {
			t.Fatalf("variants: %d forms for %d keys, %v", len(vs), len(keys), err)
		}
		gmail := e.Domain == "gmail.com" || e.Domain == "googlemail.com"
		for _, v := range vs {
			local, _, _ := strings.Cut(v.Text, "@")
			for _, p := range v.Platforms {
				if p == PlatformGoogle && gmail && strings.Contains(local, ".") {
					t.Fatalf("a Google form of a gmail address kept its dots: %q", v.Text)
				}
				if p == PlatformTikTok && strings.Contains(local, "+") && !strings.HasPrefix(e.Local, "+") {
					t.Fatalf("TikTok's form kept a tag: %q", v.Text)
				}
			}
		}
	})
}

func FuzzNormalizePhone(f *testing.F) {
	for _, s := range []string{"(800)555-0100", "+44 20 7946 0958", "0044 20 7946 0958", "12", "+", "00", "+1 (800) 555-0100 ext. 12", "tel:+1-800-555-0100"} {
		f.Add(s, "US")
		f.Add(s, "")
	}
	f.Fuzz(func(t *testing.T, raw, region string) {
		n, err := NewNormalizer(region)
		if err != nil {
			return
		}
		e164, err := n.NormalizePhone(raw)
		if err != nil {
			return
		}
		if !strings.HasPrefix(e164, "+") || len(e164) < 3 || strings.Trim(e164[1:], "0123456789") != "" {
			t.Fatalf("not E.164: %q", e164)
		}
		again, err := Normalizer{}.NormalizePhone(e164)
		if err != nil || again != e164 {
			t.Fatalf("not idempotent: %q -> %q (%v)", e164, again, err)
		}
	})
}

func FuzzNormalizeOthers(f *testing.F) {
	f.Add("6D92078A-8246-4BA4-AE5B-76104861E7DC")
	f.Add("6d92078a82464ba4ae5b76104861e7dc")
	f.Add(strings.Repeat("ab", 32))
	f.Add("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
	f.Add("47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU")
	f.Add(" Cust-0042 ")
	f.Fuzz(func(t *testing.T, raw string) {
		if m, err := NormalizeMAID(raw); err == nil {
			if again, err := NormalizeMAID(m); err != nil || again != m || len(m) != 36 {
				t.Fatalf("maid not idempotent: %q -> %q (%v)", m, again, err)
			}
		}
		if u, err := NormalizeUserID(raw); err == nil {
			if again, err := NormalizeUserID(u); err != nil || again != u {
				t.Fatalf("user id not idempotent: %q -> %q (%v)", u, again, err)
			}
		}
		if d, err := ParseSHA256(IDEmailSHA256, raw); err == nil {
			k1, _ := Normalizer{}.Expand(Identifier{IDEmailSHA256, raw})
			if len(k1) != 1 || k1[0].Hash != d {
				t.Fatalf("hashed identifier is not its own key")
			}
		}
	})
}
