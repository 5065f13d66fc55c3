package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// LinkRecipient is one recipient of a [LinksRequest]: who the links are
// for, and the claims of this recipient that differ from the request's.
type LinkRecipient struct {
	// Ref is optional, the caller's own reference, echoed in [Links.Ref].
	Ref string `json:"ref,omitempty"`
	// Identifier is who the link unsubscribes: an email address or a
	// phone number, usually.
	Identifier Identifier `json:"identifier"`
	// Namespace, Scopes, CampaignID and ListID override the request's
	// when set.
	Namespace  string   `json:"namespace,omitempty"`
	Scopes     []string `json:"scopes,omitempty"`
	CampaignID string   `json:"campaign_id,omitempty"`
	ListID     string   `json:"list_id,omitempty"`
}

// LinksRequest asks for the unsubscribe links of the recipients of a send
// (POST /v1/links, scope links). It may hold any number of recipients:
// [Client.Links] splits it into requests the server accepts.
type LinksRequest struct {
	// Namespace is the tenant or brand; the server's "default" when empty.
	Namespace string `json:"namespace,omitempty"`
	// Scopes are what the links unsubscribe from ("topic:newsletter",
	// "email", "*"...). Empty: "email" for an email address, "sms" for a
	// phone number.
	Scopes []string `json:"scopes,omitempty"`
	// CampaignID and ListID are copied into the unsubscribe event.
	CampaignID string          `json:"campaign_id,omitempty"`
	ListID     string          `json:"list_id,omitempty"`
	Recipients []LinkRecipient `json:"recipients"`
}

// Links are the unsubscribe links of one recipient.
type Links struct {
	// Ref is the recipient's Ref.
	Ref string
	// ListUnsubscribe and ListUnsubscribePost are the values of the
	// List-Unsubscribe and List-Unsubscribe-Post headers, to set as they
	// are (the mail library folds List-Unsubscribe after its comma; DKIM
	// must sign both).
	ListUnsubscribe     string
	ListUnsubscribePost string
	// URL is the https link, for the message's footer.
	URL string
	// Mailto is the mailto: alternative, or "" when the server has no
	// mailto address.
	Mailto string
	// ExpiresAt is when the links stop working.
	ExpiresAt time.Time
	// Err is set, and the links empty, when the server refused this
	// recipient (an *APIError whose Field is relative to the caller's
	// request, "recipients[12].identifier.value") or the request that
	// should have answered it failed.
	Err error
}

// Links mints the unsubscribe links of every recipient of req, one Links
// per recipient in the order of req.Recipients.
//
// Like CheckBatch it sends at most Options.LinksBatchSize recipients per
// request (10,000 by default, the server's limit), up to
// Options.BatchConcurrency requests at a time, each retried on a 503 or a
// connection failure and bounded by Options.BatchTimeout; a 413 is split
// in halves. A
// recipient the server refuses gets Err and no links; the others are
// answered and the call returns no error for it. If a request fails, no
// further one is sent, and the call returns the error together with a full
// slice in which every recipient not answered has Err set. Marketing mail
// to Gmail and Yahoo needs the one-click header: do not send to a recipient
// whose Links have Err.
func (c *Client) Links(ctx context.Context, req LinksRequest) ([]Links, error) {
	n := len(req.Recipients)
	out := make([]Links, n)
	size := c.opts.LinksBatchSize
	answered, err := c.chunked(ctx, n, size, "recipients", func(ctx context.Context, lo, hi int) error {
		return splitTooLarge(lo, hi, func(lo, hi int) error { return c.linksChunk(ctx, req, lo, hi, out[lo:hi]) })
	})
	if err != nil {
		err = opError("links", err)
		for i := range out {
			if !answered[i/size] {
				out[i] = Links{Ref: req.Recipients[i].Ref, Err: err}
			}
		}
	}
	return out, err
}

type wireLinks struct {
	ExpiresAt time.Time `json:"expires_at"`
	Results   []struct {
		Ref     string `json:"ref"`
		Headers *struct {
			ListUnsubscribe     string `json:"List-Unsubscribe"`
			ListUnsubscribePost string `json:"List-Unsubscribe-Post"`
		} `json:"headers"`
		URL    string     `json:"url"`
		Mailto string     `json:"mailto"`
		Error  *wireError `json:"error"`
	} `json:"results"`
}

// linksChunk sends recipients [lo, hi) and, only if the whole answer is
// sound, writes it to out.
func (c *Client) linksChunk(ctx context.Context, req LinksRequest, lo, hi int, out []Links) error {
	req.Recipients = req.Recipients[lo:hi]
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	var ans wireLinks
	if err := c.postJSON(ctx, "v1/links", c.opts.BatchTimeout, body, maxBatchResponse, &ans); err != nil {
		return err
	}
	if len(ans.Results) != len(req.Recipients) {
		return fmt.Errorf("response has %d results for %d recipients", len(ans.Results), len(req.Recipients))
	}
	for i, r := range ans.Results {
		if want := req.Recipients[i].Ref; want != "" && r.Ref != want {
			return fmt.Errorf("result %d has ref %q, want %q", i, r.Ref, want)
		}
		if r.Error == nil && (r.Headers == nil || r.Headers.ListUnsubscribe == "" || r.URL == "") {
			return errors.New("a result has neither links nor an error")
		}
	}
	for i, r := range ans.Results {
		l := Links{Ref: req.Recipients[i].Ref}
		if r.Error != nil {
			e := r.Error.apiError(0)
			e.Field = shiftIndex(e.Field, "recipients[", lo)
			e.Message = shiftIndex(e.Message, "recipients[", lo)
			l.Err = e
		} else {
			l.ListUnsubscribe, l.ListUnsubscribePost = r.Headers.ListUnsubscribe, r.Headers.ListUnsubscribePost
			l.URL, l.Mailto, l.ExpiresAt = r.URL, r.Mailto, ans.ExpiresAt
		}
		out[i] = l
	}
	return nil
}
