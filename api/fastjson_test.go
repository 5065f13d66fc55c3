package api

import (
	"math/rand/v2"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// TestFastDecodeAgrees holds the fast path to the strict decoding: on
// every body it accepts (the seeds and about 100,000 mutations of them),
// the strict decoding accepts it too and makes the same request of it;
// on every body it declines, the request it was given is untouched (the
// strict decoding then starts from a zero value).
func TestFastDecodeAgrees(t *testing.T) {
	seeds := []string{
		`{"channel":"email","purpose":"marketing","contacts":[{"ref":"1","identifiers":[{"type":"email","value":"a@example.org"}]}]}`,
		`{"namespace":"brand-a","topic":"topic:news","channel":"ads","purpose":"advertising","contacts":[{"identifiers":[{"type":"phone","value":"+44 7700 900123"},{"type":"maid","value":"AECE52E7-03EE-455A-B3C4-E57283966239"}]},{"ref":"é ☃","identifiers":[]}]}`,
		" {\n\t\"contacts\" : [ { \"ref\" : \"x\" , \"identifiers\" : [ { \"value\" : \"v\" , \"type\" : \"t\" } ] } ] , \"channel\" : \"email\" }\r\n",
		`{"identifiers":[{"type":"email","value":"a@example.org"}],"channel":"email","purpose":"marketing"}`,
		`{"identifiers":[{"type":"email_sha256","value":"` + "ab12" + `"},{}],"namespace":"","topic":""}`,
		`{"contacts":[]}`, `{"identifiers":[]}`, `{}`,
		// What the fast path leaves to the strict decoding:
		`{"channel":null,"contacts":[null]}`, `{"Channel":"email","identifiers":[]}`, `{"channel":"a\"b","identifiers":[]}`,
		`{"channel":"email","channel":"sms","identifiers":[]}`, `{"identifiers":[{"type":"email","value":"a","extra":1}]}`,
		`{"contacts":[{"identifiers":null}]}`, `{"identifiers":[]} {}`, `[]`, `{"channel":5}`, `{"contacts":[{"ref":"\u00e9"}]}`,
	}
	alphabet := []string{`{`, `}`, `[`, `]`, `"`, `:`, `,`, ` `, "\n", `\`, `null`, `0`, `"x"`, `"type"`, `"value"`,
		`"identifiers"`, `"contacts"`, `"ref"`, `"channel"`, `{}`, `[]`, `é`, "\x01", `true`}
	rng := rand.New(rand.NewPCG(1, 2))
	mutate := func(s string) string {
		for range 1 + rng.IntN(3) {
			i := rng.IntN(len(s) + 1)
			switch rng.IntN(3) {
			case 0: // insert
				s = s[:i] + alphabet[rng.IntN(len(alphabet))] + s[i:]
			case 1: // delete a few bytes
				j := min(len(s), i+1+rng.IntN(4))
				s = s[:i] + s[j:]
			default: // replace
				j := min(len(s), i+1)
				s = s[:i] + alphabet[rng.IntN(len(alphabet))] + s[j:]
			}
		}
		return s
	}
	sentinel := text("untouched")
	fast := map[string]int{}
	check := func(body string) {
		if !utf8.ValidString(body) {
			return // refused before any decoding
		}
		{
			got := checkRequest{sendFields: sendFields{Topic: sentinel}}
			if got.decodeFast([]byte(body)) {
				fast["check"]++
				var want checkRequest
				require.NoError(t, decodeStrict([]byte(body), nil, 1<<20, &want), "the fast path took %q", body)
				require.Equal(t, want, got, "%q", body)
			} else {
				require.Equal(t, checkRequest{sendFields: sendFields{Topic: sentinel}}, got, "declined, untouched: %q", body)
			}
		}
		got := batchRequest{sendFields: sendFields{Topic: sentinel}}
		if got.decodeFast([]byte(body)) {
			fast["batch"]++
			var want batchRequest
			require.NoError(t, decodeStrict([]byte(body), nil, 1<<20, &want), "the fast path took %q", body)
			require.Equal(t, want, got, "%q", body)
		} else {
			require.Equal(t, batchRequest{sendFields: sendFields{Topic: sentinel}}, got, "declined, untouched: %q", body)
		}
	}
	for _, s := range seeds {
		check(s)
	}
	require.Equal(t, map[string]int{"check": 4, "batch": 5}, fast, "the plain seeds take the fast path, the others do not")
	for range 50_000 {
		s := seeds[rng.IntN(len(seeds))]
		check(mutate(s))
		check(mutate(mutate(s)))
	}
	t.Logf("fast path taken by %d check and %d batch bodies", fast["check"], fast["batch"])
	require.Greater(t, fast["batch"], 500, "mutations the fast path takes are compared, not only declined")
}
