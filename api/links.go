package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"time"

	"github.com/suppressd/suppressd/suppression"
	"github.com/suppressd/suppressd/unsubscribe"
)

// linkClaims are the claims a request shares and each recipient may set
// for itself. As everywhere in the API, null is not a string or a list.
type linkClaims struct {
	Namespace  text      `json:"namespace"`
	Scopes     scopeList `json:"scopes"`
	CampaignID text      `json:"campaign_id"`
	ListID     text      `json:"list_id"`
}

// scopeList is a list of scopes; null is refused, for the list and for
// each scope (see text).
type scopeList []text

func (l *scopeList) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return &json.UnmarshalTypeError{Value: "null", Type: reflect.TypeFor[[]string]()}
	}
	return json.Unmarshal(b, (*[]text)(l))
}

func (c linkClaims) claims(id suppression.Identifier) unsubscribe.Claims {
	var scopes []suppression.Scope
	if c.Scopes != nil {
		scopes = make([]suppression.Scope, len(c.Scopes))
		for i, sc := range c.Scopes {
			scopes[i] = suppression.Scope(sc)
		}
	}
	return unsubscribe.Claims{Namespace: string(c.Namespace), Identifier: id, Scopes: scopes,
		CampaignID: string(c.CampaignID), ListID: string(c.ListID)}
}

type linkRecipient struct {
	Ref        text       `json:"ref"`
	Identifier identifier `json:"identifier"`
	linkClaims
}

// UnmarshalJSON refuses a null recipient, as identifier does.
func (rc *linkRecipient) UnmarshalJSON(b []byte) error {
	type plain linkRecipient
	return strictObject(b, (*plain)(rc))
}

type linksRequest struct {
	linkClaims
	Recipients []linkRecipient `json:"recipients"`
}

type linkHeaders struct {
	ListUnsubscribe     string `json:"List-Unsubscribe"`
	ListUnsubscribePost string `json:"List-Unsubscribe-Post"`
}

type linkResult struct {
	Ref     string       `json:"ref,omitempty"`
	Headers *linkHeaders `json:"headers,omitempty"`
	URL     string       `json:"url,omitempty"`
	Mailto  string       `json:"mailto,omitempty"`
	Error   *errorDetail `json:"error,omitempty"`
}

type linksResponse struct {
	ExpiresAt time.Time    `json:"expires_at"`
	Results   []linkResult `json:"results"`
}

var errLinksDisabled = &Error{Status: http.StatusNotFound, Code: "not_found",
	Message: "minting unsubscribe links is not enabled on this server: it needs link keys (SUPPRESSD_LINK_KEYS) and the links' public base URL (SUPPRESSD_LINK_BASE_URL)"}

// links mints the unsubscribe links of up to MaxLinks recipients, with the
// keys and TTL the /u/ pages verify. A recipient the minter refuses gets an
// error naming its field; a bad shared claim fails the request.
func (s *Server) links(w http.ResponseWriter, r *http.Request) error {
	if s.opts.Links == nil {
		return errLinksDisabled
	}
	var req linksRequest
	if err := decodeJSON(w, r, s.opts.MaxBatchBody, &req); err != nil {
		return err
	}
	switch n := len(req.Recipients); {
	case n == 0:
		return badRequest("recipients", "recipients: at least one recipient is required")
	case n > s.opts.MaxLinks:
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Field: "recipients",
			Message: fmt.Sprintf("recipients: at most %d per request, got %d; split the request", s.opts.MaxLinks, n)}
	}
	shared := req.claims(suppression.Identifier{})
	now := time.Now()
	resp := linksResponse{ExpiresAt: now.Add(s.opts.Links.TTL()).UTC().Truncate(time.Second), Results: make([]linkResult, len(req.Recipients))}
	invalid := 0
	for i := range req.Recipients {
		rc := &req.Recipients[i]
		res := &resp.Results[i]
		res.Ref = string(rc.Ref)
		l, err := s.opts.Links.Links(shared, rc.claims(suppression.Identifier{Type: suppression.IDType(rc.Identifier.Type), Value: string(rc.Identifier.Value)}), now)
		if err != nil {
			var ce *unsubscribe.ClaimError
			if !errors.As(err, &ce) {
				return err
			}
			if ce.Shared {
				// Every recipient without its own would fail alike.
				return badRequest(ce.Field, "%s: %s", ce.Field, ce.Reason)
			}
			field := fmt.Sprintf("recipients[%d]", i)
			if ce.Field != "" {
				field += "." + ce.Field
			}
			res.Error = &errorDetail{Code: "invalid_request", Message: field + ": " + ce.Reason, Field: field}
			invalid++
			continue
		}
		res.Headers = &linkHeaders{ListUnsubscribe: l.ListUnsubscribe, ListUnsubscribePost: l.ListUnsubscribePost}
		res.URL, res.Mailto = l.URL, l.Mailto
	}
	s.m.links.WithLabelValues("minted").Add(float64(len(req.Recipients) - invalid))
	s.m.links.WithLabelValues("invalid").Add(float64(invalid))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(appendLinks(nil, &resp))
	return nil
}

// appendLinks is writeJSON of a linksResponse, by hand: encoding/json
// spent a fifth of the endpoint's time checking, byte by byte, links that
// are printable ASCII without quotes or backslashes by construction
// (unsubscribe.Links). Refs and errors, which the caller or the reason
// wrote, are still escaped. TestLinksJSON holds it to encoding/json.
func appendLinks(b []byte, resp *linksResponse) []byte {
	n := 64
	for i := range resp.Results {
		r := &resp.Results[i]
		n += 128 + len(r.Ref)
		if r.Headers != nil {
			n += len(r.Headers.ListUnsubscribe) + len(r.Headers.ListUnsubscribePost) + len(r.URL) + len(r.Mailto)
		}
	}
	b = slices.Grow(b, n)
	b = append(b, `{"expires_at":"`...)
	b = resp.ExpiresAt.AppendFormat(b, time.RFC3339)
	b = append(b, `","results":[`...)
	for i := range resp.Results {
		r := &resp.Results[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		if r.Ref != "" {
			b = append(b, `"ref":`...)
			b = appendJSONString(b, r.Ref)
			b = append(b, ',')
		}
		if r.Error != nil {
			e, _ := json.Marshal(r.Error) // a few fixed strings: cannot fail
			b = append(b, `"error":`...)
			b = append(b, e...)
		} else {
			b = append(b, `"headers":{"List-Unsubscribe":"`...)
			b = append(b, r.Headers.ListUnsubscribe...)
			b = append(b, `","List-Unsubscribe-Post":"`...)
			b = append(b, r.Headers.ListUnsubscribePost...)
			b = append(b, `"},"url":"`...)
			b = append(b, r.URL...)
			b = append(b, '"')
			if r.Mailto != "" {
				b = append(b, `,"mailto":"`...)
				b = append(b, r.Mailto...)
				b = append(b, '"')
			}
		}
		b = append(b, '}')
	}
	return append(b, "]}\n"...)
}

// appendJSONString appends s as a JSON string: as it is when it needs no
// escaping, through encoding/json otherwise.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c >= 0x7f || c == '"' || c == '\\' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
