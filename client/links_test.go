package client_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/api"
	"github.com/suppressd/suppressd/client"
	"github.com/suppressd/suppressd/internal/openapitest"
	"github.com/suppressd/suppressd/store/memstore"
	"github.com/suppressd/suppressd/suppression"
	"github.com/suppressd/suppressd/unsubscribe"
)

// linksServer is the real API handler (minting needs neither Redis nor
// Kafka, so its store is never asked), with every exchange it answers held
// to schemas/openapi.yaml, and an optional outage in front of it.
type linksServer struct {
	url  string
	keys *unsubscribe.Keyring

	mu    sync.Mutex
	sizes []int // recipients per request that reached the API
	calls int   // requests, outages included
	// outage, when set, answers request n (1-based) with a 503 instead.
	outage func(n int, recipients int) bool
}

const linksKey = "sdk_client_links"

func newLinksServer(t *testing.T, mint bool, tweak ...func(*api.Options)) *linksServer {
	t.Helper()
	secret := sha256.Sum256([]byte("client links test"))
	kr, err := unsubscribe.NewKeyring("k1", []unsubscribe.Key{{ID: "k1", Secret: secret[:]}})
	require.NoError(t, err)
	h := sha256.Sum256([]byte(linksKey))
	keys, err := api.ParseKeys("mailer:links:" + hex.EncodeToString(h[:]))
	require.NoError(t, err)
	opts := api.Options{Keys: keys, Normalizer: suppression.Normalizer{DefaultRegion: "US"}}
	if mint {
		opts.Links, err = unsubscribe.NewMinter(unsubscribe.MinterOptions{Keyring: kr, BaseURL: "https://mail.example.org",
			Mailto: "unsubscribe@example.org", Normalizer: opts.Normalizer})
		require.NoError(t, err)
	}
	for _, f := range tweak {
		f(&opts)
	}
	handler := api.New(memstore.New(), opts, slog.New(slog.DiscardHandler), prometheus.NewRegistry()).Handler()
	spec := openapitest.New(t)
	s := &linksServer{keys: kr}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req struct{ Recipients []json.RawMessage }
		_ = json.Unmarshal(body, &req)
		s.mu.Lock()
		s.calls++
		n := s.calls
		s.mu.Unlock()
		if s.outage != nil && s.outage(n, len(req.Recipients)) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"error":{"code":"unavailable","message":"overloaded"}}`)
			return
		}
		s.mu.Lock()
		s.sizes = append(s.sizes, len(req.Recipients))
		s.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, r)
		resp := rec.Result()
		if resp.StatusCode < 400 {
			spec.Check(t, r, body, resp, rec.Body.Bytes())
		} else {
			spec.CheckResponse(t, r, body, resp, rec.Body.Bytes())
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

func (s *linksServer) requestSizes() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.sizes...)
}

func recipients(n int) []client.LinkRecipient {
	out := make([]client.LinkRecipient, n)
	for i := range out {
		out[i] = client.LinkRecipient{Ref: fmt.Sprintf("r-%d", i), Identifier: client.Identifier{Type: client.TypeEmail, Value: fmt.Sprintf("user%d@example.org", i)}}
	}
	return out
}

// requireLinks checks that l holds links whose token the server's keyring
// opens into the recipient and scopes asked for.
func (s *linksServer) requireLinks(t *testing.T, l client.Links, value string, scopes ...suppression.Scope) {
	t.Helper()
	require.NoError(t, l.Err)
	require.Equal(t, "<"+l.URL+">, <"+l.Mailto+">", l.ListUnsubscribe)
	require.Equal(t, "List-Unsubscribe=One-Click", l.ListUnsubscribePost)
	require.WithinDuration(t, time.Now().Add(unsubscribe.DefaultTTL), l.ExpiresAt, time.Minute)
	token, ok := strings.CutPrefix(l.URL, "https://mail.example.org/u/")
	require.True(t, ok, l.URL)
	c, err := s.keys.Verify(token, time.Now())
	require.NoError(t, err)
	require.Equal(t, value, c.Identifier.Value)
	require.Equal(t, scopes, c.Scopes)
}

// TestLinks: any number of recipients come back in order, each with links
// the server's keys open, split into requests of BatchSize sent
// concurrently; a refused recipient's error names it in the caller's
// request, not in the chunk.
func TestLinks(t *testing.T) {
	s := newLinksServer(t, true)
	opts := fast
	opts.LinksBatchSize, opts.BatchConcurrency = 10, 3
	c := newClient(t, s.url, linksKey, opts)
	req := client.LinksRequest{Scopes: []string{"topic:newsletter"}, CampaignID: "c-1", Recipients: recipients(25)}
	req.Recipients[17].Identifier.Value = "user17-at-example.org"
	req.Recipients[3].Scopes = []string{"*"}

	got, err := c.Links(context.Background(), req)

	require.NoError(t, err)
	require.ElementsMatch(t, []int{10, 10, 5}, s.requestSizes())
	require.Len(t, got, 25)
	for i, l := range got {
		require.Equal(t, fmt.Sprintf("r-%d", i), l.Ref)
		switch i {
		case 17:
			var apiErr *client.APIError
			require.ErrorAs(t, l.Err, &apiErr)
			require.ErrorIs(t, l.Err, client.ErrInvalidRequest)
			require.Equal(t, "recipients[17].identifier.value", apiErr.Field, "index in the caller's request")
			require.True(t, strings.HasPrefix(apiErr.Message, "recipients[17].identifier.value: "), apiErr.Message)
			require.NotContains(t, l.Err.Error(), "user17-at-example.org")
			require.Empty(t, l.URL)
			require.Empty(t, l.ListUnsubscribe)
		case 3:
			s.requireLinks(t, l, "user3@example.org", "*")
		default:
			s.requireLinks(t, l, fmt.Sprintf("user%d@example.org", i), "topic:newsletter")
		}
	}
}

func TestLinksDefaultChunkIsServerLimit(t *testing.T) {
	s := newLinksServer(t, true)
	c := newClient(t, s.url, linksKey, fast)

	got, err := c.Links(context.Background(), client.LinksRequest{Recipients: recipients(10_001)})

	require.NoError(t, err)
	require.Equal(t, []int{10_000, 1}, s.requestSizes())
	require.Len(t, got, 10_001)
	s.requireLinks(t, got[10_000], "user10000@example.org", "email")
}

// TestLinksSplitsWhatIsTooLarge: a request over the server's body limit
// (413) is sent again in halves until each fits; the caller sees every
// recipient answered, in order.
func TestLinksSplitsWhatIsTooLarge(t *testing.T) {
	s := newLinksServer(t, true, func(o *api.Options) { o.MaxBatchBody = 700 })
	c := newClient(t, s.url, linksKey, fast)

	got, err := c.Links(context.Background(), client.LinksRequest{CampaignID: strings.Repeat("c", 100), Recipients: recipients(8)})

	require.NoError(t, err)
	require.Equal(t, []int{8, 4, 4}, s.requestSizes(), "8 recipients are over the limit, 4 fit")
	for i, l := range got {
		require.Equal(t, fmt.Sprintf("r-%d", i), l.Ref)
		s.requireLinks(t, l, fmt.Sprintf("user%d@example.org", i), "email")
	}
}

// TestLinksRetries: a 503 is retried as for checks; a request that keeps
// failing stops the call, answered recipients keep their links and the
// others carry the error.
func TestLinksRetries(t *testing.T) {
	t.Run("a passing outage", func(t *testing.T) {
		s := newLinksServer(t, true)
		s.outage = func(n, _ int) bool { return n <= 2 }
		opts := fast
		opts.MaxAttempts = 3
		c := newClient(t, s.url, linksKey, opts)
		got, err := c.Links(context.Background(), client.LinksRequest{Recipients: recipients(3)})
		require.NoError(t, err)
		require.Equal(t, []int{3}, s.requestSizes(), "the third attempt got through")
		s.requireLinks(t, got[2], "user2@example.org", "email")
	})
	t.Run("a chunk that keeps failing", func(t *testing.T) {
		s := newLinksServer(t, true)
		s.outage = func(n, size int) bool { return n > 1 }
		opts := fast
		opts.LinksBatchSize, opts.MaxAttempts = 4, 2
		c := newClient(t, s.url, linksKey, opts)
		got, err := c.Links(context.Background(), client.LinksRequest{Recipients: recipients(10)})
		require.Error(t, err)
		require.True(t, client.IsUnavailable(err))
		require.ErrorContains(t, err, "recipients 4 to 7")
		require.Equal(t, []int{4}, s.requestSizes(), "nothing sent after the failed chunk")
		require.Len(t, got, 10)
		for i, l := range got {
			require.Equal(t, fmt.Sprintf("r-%d", i), l.Ref)
			if i < 4 {
				s.requireLinks(t, l, fmt.Sprintf("user%d@example.org", i), "email")
				continue
			}
			require.ErrorIs(t, l.Err, err)
			require.Empty(t, l.ListUnsubscribe)
		}
	})
}

// TestLinksRefused: what retrying cannot change is not retried: a bad
// shared scope, a key without the scope, a server that mints no links.
func TestLinksRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mint   bool
		req    client.LinksRequest
		status int
		code   string
		field  string
	}{
		{"bad shared scope", true, client.LinksRequest{Scopes: []string{"newsletter"}, Recipients: recipients(2)}, 400, client.CodeInvalidRequest, "scopes[0]"},
		{"no link keys on the server", false, client.LinksRequest{Recipients: recipients(2)}, 404, client.CodeNotFound, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newLinksServer(t, tc.mint)
			c := newClient(t, s.url, linksKey, fast)
			got, err := c.Links(context.Background(), tc.req)
			var apiErr *client.APIError
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, tc.status, apiErr.Status)
			require.Equal(t, tc.code, apiErr.Code)
			require.Equal(t, tc.field, apiErr.Field)
			require.Equal(t, []int{2}, s.requestSizes(), "not retried")
			for _, l := range got {
				require.ErrorIs(t, l.Err, err)
				require.Empty(t, l.URL)
			}
		})
	}
	s := newLinksServer(t, true)
	c := newClient(t, s.url, "sdk_wrong", fast)
	_, err := c.Links(context.Background(), client.LinksRequest{Recipients: recipients(1)})
	require.ErrorIs(t, err, client.ErrUnauthorized)
}
