package api

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/suppression"
	"github.com/suppressd/suppressd/unsubscribe"
)

const linkTTL = 45 * 24 * time.Hour

func testLinkKeys(t testing.TB) *unsubscribe.Keyring {
	secret := sha256.Sum256([]byte("api links test"))
	kr, err := unsubscribe.NewKeyring("k1", []unsubscribe.Key{{ID: "k1", Secret: secret[:]}})
	require.NoError(t, err)
	return kr
}

func testMinter(t testing.TB, kr *unsubscribe.Keyring, mailto string) *unsubscribe.Minter {
	m, err := unsubscribe.NewMinter(unsubscribe.MinterOptions{Keyring: kr, BaseURL: "https://mail.example.org/sd",
		Mailto: mailto, TTL: linkTTL, Normalizer: norm})
	require.NoError(t, err)
	return m
}

func standalone(t testing.TB) redis.UniversalClient {
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

func recipient(ref string, id suppression.Identifier, own map[string]any) map[string]any {
	r := map[string]any{"identifier": id}
	if ref != "" {
		r["ref"] = ref
	}
	for k, v := range own {
		r[k] = v
	}
	return r
}

// TestLinks: a sender gets, per recipient and in order, the headers of a
// send whose token the /u/ pages' keyring opens into what was asked (the
// shared claims filling in), and an error naming the field of a recipient
// that cannot have one, while the others are answered.
func TestLinks(t *testing.T) {
	kr := testLinkKeys(t)
	e := newEnv(t, standalone(t), Options{Links: testMinter(t, kr, "unsubscribe@example.org")})
	before := time.Now()
	status, body := e.postJSON("/v1/links", linksKey, map[string]any{
		"namespace": "acme", "scopes": []string{"topic:newsletter"}, "campaign_id": "c-2026-11", "list_id": "weekly",
		"recipients": []map[string]any{
			recipient("r-1", email("Alice.Links@Example.org"), nil),
			recipient("r-2", suppression.Identifier{Type: suppression.IDPhone, Value: "(415) 555-0100"}, map[string]any{"scopes": []string{"sms"}, "namespace": "acme-sms"}),
			recipient("r-3", email("not an address"), nil),
			recipient("", email("@example.org"), nil),
			recipient("r-5", suppression.Identifier{Type: suppression.IDPhone, Value: "555-0100"}, nil),
		},
	})
	require.Equal(t, http.StatusOK, status, body)
	expires, err := time.Parse(time.RFC3339, body["expires_at"].(string))
	require.NoError(t, err)
	require.WithinDuration(t, before.Add(linkTTL), expires, 5*time.Second)
	results := body["results"].([]any)
	require.Len(t, results, 5)
	res := func(i int) map[string]any { return results[i].(map[string]any) }

	for i, want := range []unsubscribe.Claims{
		{Namespace: "acme", Identifier: email("Alice.Links@Example.org"), Scopes: []suppression.Scope{"topic:newsletter"}, CampaignID: "c-2026-11", ListID: "weekly"},
		{Namespace: "acme-sms", Identifier: suppression.Identifier{Type: suppression.IDPhone, Value: "(415) 555-0100"}, Scopes: []suppression.Scope{"sms"}, CampaignID: "c-2026-11", ListID: "weekly"},
	} {
		r := res(i)
		require.Equal(t, fmt.Sprintf("r-%d", i+1), r["ref"])
		require.NotContains(t, r, "error")
		h := r["headers"].(map[string]any)
		require.Equal(t, "List-Unsubscribe=One-Click", h["List-Unsubscribe-Post"])
		require.Equal(t, "<"+r["url"].(string)+">, <"+r["mailto"].(string)+">", h["List-Unsubscribe"])
		token, ok := strings.CutPrefix(r["url"].(string), "https://mail.example.org/sd/u/")
		require.True(t, ok, r["url"])
		got, err := kr.Verify(token, time.Now())
		require.NoError(t, err, "the /u/ pages' keyring opens it")
		want.IssuedAt, want.ExpiresAt = got.IssuedAt, expires
		require.Equal(t, want, got)
		_, err = kr.Verify(token, expires)
		require.ErrorIs(t, err, unsubscribe.ErrExpired, "it works for the configured TTL, no longer")
		u, err := url.Parse(r["mailto"].(string))
		require.NoError(t, err)
		fromMail, _, err := kr.VerifySubject(u.Query().Get("subject"), time.Now())
		require.NoError(t, err, "the mailto's subject carries the same token")
		require.Equal(t, got, fromMail)
		require.NotContains(t, strings.ToLower(fmt.Sprint(r)), "alice", "the links do not show the address")
	}

	requireErrors(t, results, map[int]string{2: "recipients[2].identifier.value", 3: "recipients[3].identifier.value", 4: "recipients[4].identifier.value"})
	require.NotContains(t, res(3), "ref", "no ref, none echoed")
	require.Contains(t, res(4)["error"].(map[string]any)["message"], "local number without its area code")

	// What the description itself rules out is answered per recipient too
	// (the server is lenient, as for batch checks).
	b := mustJSON(t, map[string]any{"scopes": []string{"email"}, "recipients": []map[string]any{
		recipient("ok", email("dave.links@example.org"), nil),
		recipient("fax", suppression.Identifier{Type: "fax", Value: "+1 415 555 0199"}, nil),
		recipient("topic", email("erin.links@example.org"), map[string]any{"scopes": []string{"email", "newsletter"}}),
		recipient("empty", suppression.Identifier{}, nil),
		recipient("swapped", suppression.Identifier{Type: "swapped.value@example.org", Value: "email"}, nil),
	}})
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/links", strings.NewReader(string(b)))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+linksKey)
	resp, err := e.srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	e.spec.CheckResponse(t, req, b, resp, rb)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(rb))
	var lenient struct{ Results []any }
	require.NoError(t, json.Unmarshal(rb, &lenient))
	require.Len(t, lenient.Results, 5)
	require.Contains(t, lenient.Results[0], "url")
	requireErrors(t, lenient.Results, map[int]string{1: "recipients[1].identifier.type", 2: "recipients[2].scopes[1]", 3: "recipients[3].identifier.type", 4: "recipients[4].identifier.type"})
	require.NotContains(t, string(rb), "swapped.value", "a value in the type field is not repeated either")
}

// requireErrors checks that the results at the given indexes are errors
// naming the field, and carry no links.
func requireErrors(t *testing.T, results []any, fields map[int]string) {
	t.Helper()
	for i, field := range fields {
		r := results[i].(map[string]any)
		require.NotContains(t, r, "headers")
		require.NotContains(t, r, "url")
		errObj := r["error"].(map[string]any)
		require.Equal(t, "invalid_request", errObj["code"])
		require.Equal(t, field, errObj["field"], errObj["message"])
		require.True(t, strings.HasPrefix(errObj["message"].(string), field+": "), errObj["message"])
	}
}

// TestLinksLimits: 10,000 recipients in one call; more, or a body over the
// limit, is a 413 naming the limit; a bad shared claim fails the call with
// its field; a server without link keys says so with a 404.
func TestLinksLimits(t *testing.T) {
	kr := testLinkKeys(t)
	rdb := standalone(t)
	e := newEnv(t, rdb, Options{Links: testMinter(t, kr, "")})
	many := func(n int) []map[string]any {
		rs := make([]map[string]any, n)
		for i := range rs {
			rs[i] = recipient(fmt.Sprintf("m-%d", i), email(fmt.Sprintf("m%d@example.org", i)), nil)
		}
		return rs
	}
	status, body := e.postJSON("/v1/links", linksKey, map[string]any{"recipients": many(10_000)})
	require.Equal(t, http.StatusOK, status)
	results := body["results"].([]any)
	require.Len(t, results, 10_000)
	seen := map[string]bool{}
	for i, r := range results {
		r := r.(map[string]any)
		require.Equal(t, fmt.Sprintf("m-%d", i), r["ref"])
		require.NotContains(t, r, "mailto", "no mailto address configured")
		require.Equal(t, "<"+r["url"].(string)+">", r["headers"].(map[string]any)["List-Unsubscribe"])
		require.False(t, seen[r["url"].(string)], "one token per recipient")
		seen[r["url"].(string)] = true
	}

	for _, tc := range []struct {
		name   string
		opts   Options
		key    string
		req    any
		status int
		code   string
		field  string
		msg    string
	}{
		{"10,001 recipients", Options{}, linksKey, map[string]any{"recipients": many(10_001)}, 413, "too_large", "recipients", "at most 10000 per request, got 10001"},
		{"body over the limit", Options{MaxBatchBody: 4096}, linksKey, map[string]any{"recipients": many(100)}, 413, "too_large", "", "over the 4096-byte limit"},
		{"no recipients", Options{}, linksKey, map[string]any{"recipients": []any{}}, 400, "invalid_request", "recipients", "at least one"},
		{"bad shared scope", Options{}, linksKey, map[string]any{"scopes": []string{"email", "transactional"}, "recipients": many(3)}, 400, "invalid_request", "scopes[1]", "scopes[1]:"},
		{"bad shared namespace", Options{}, linksKey, map[string]any{"namespace": "Acme Inc", "recipients": many(3)}, 400, "invalid_request", "namespace", "namespace:"},
		{"unknown field", Options{}, linksKey, map[string]any{"topic": "news", "recipients": many(1)}, 400, "invalid_request", "topic", "unknown field"},
		{"null shared list_id", Options{}, linksKey, map[string]any{"list_id": nil, "recipients": many(1)}, 400, "invalid_request", "list_id", "null"},
		{"null scopes", Options{}, linksKey, map[string]any{"scopes": nil, "recipients": many(1)}, 400, "invalid_request", "scopes", "null"},
		{"null scope", Options{}, linksKey, map[string]any{"scopes": []any{"email", nil}, "recipients": many(1)}, 400, "invalid_request", "scopes", "null"},
		{"null recipient campaign_id", Options{}, linksKey, map[string]any{"recipients": []any{map[string]any{"campaign_id": nil, "identifier": map[string]any{"type": "email", "value": "a@example.org"}}}}, 400, "invalid_request", "recipients.campaign_id", "null"},
		{"null recipient", Options{}, linksKey, map[string]any{"recipients": []any{nil}}, 400, "invalid_request", "recipients", "null"},
		{"null identifier value", Options{}, linksKey, map[string]any{"recipients": []any{map[string]any{"identifier": map[string]any{"type": "email", "value": nil}}}}, 400, "invalid_request", "recipients.identifier.value", "null"},
		{"a check key", Options{}, checkKey, map[string]any{"recipients": many(1)}, 403, "forbidden", "", "links scope"},
		{"no link keys", Options{Links: nil}, linksKey, map[string]any{"recipients": many(1)}, 404, "not_found", "", "SUPPRESSD_LINK_KEYS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			if tc.name != "no link keys" {
				o.Links = testMinter(t, kr, "")
			}
			env := newEnv(t, rdb, o)
			status, body := env.postJSON("/v1/links", tc.key, tc.req)
			require.Equal(t, tc.status, status, body)
			errObj := body["error"].(map[string]any)
			require.Equal(t, tc.code, errObj["code"])
			if tc.field == "" {
				require.NotContains(t, errObj, "field")
			} else {
				require.Equal(t, tc.field, errObj["field"])
			}
			require.Contains(t, errObj["message"], tc.msg)
		})
	}
}

// TestLinksJSON holds the hand-written answer of POST /v1/links to what
// encoding/json writes for the same results, refs with quotes, control
// characters, non-ASCII and HTML included: a sender's JSON parser sees
// the same values either way.
func TestLinksJSON(t *testing.T) {
	kr := testLinkKeys(t)
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	for _, mailto := range []string{"", "unsubscribe@example.org"} {
		m := testMinter(t, kr, mailto)
		resp := linksResponse{ExpiresAt: now.Add(linkTTL)}
		for i, ref := range []string{"", "r-1", `quote " and \ backslash`, "tab\tnew\nline\x00nul", "émilie ✉", "<script>&amp;", "\u2028\u2029", string([]byte{0xff, 0xfe})} {
			l, err := m.Links(unsubscribe.Claims{}, unsubscribe.Claims{Identifier: email(fmt.Sprintf("json%d@example.org", i))}, now)
			require.NoError(t, err)
			resp.Results = append(resp.Results, linkResult{Ref: ref, Headers: &linkHeaders{ListUnsubscribe: l.ListUnsubscribe, ListUnsubscribePost: l.ListUnsubscribePost},
				URL: l.URL, Mailto: l.Mailto})
			resp.Results = append(resp.Results, linkResult{Ref: ref, Error: &errorDetail{Code: "invalid_request", Message: `recipients[3].scopes[0]: unknown scope "fax\"<x>"`, Field: "recipients[3].scopes[0]"}})
		}
		got := appendLinks(nil, &resp)
		require.True(t, json.Valid(got), string(got))
		want, err := json.Marshal(resp)
		require.NoError(t, err)
		var g, w any
		require.NoError(t, json.Unmarshal(got, &g))
		require.NoError(t, json.Unmarshal(want, &w))
		require.Equal(t, w, g)
	}
}
