package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// wireResult is one answer as the server sends it, for /v1/check and for
// each contact of /v1/check/batch.
type wireResult struct {
	Ref string `json:"ref"`
	// Allowed is a pointer so that an answer without it is an error
	// rather than a silent "not allowed".
	Allowed     *bool        `json:"allowed"`
	Suppression *Suppression `json:"suppression"`
	Error       *wireError   `json:"error"`
}

// Check asks whether one contact may receive a send.
//
// IMPORTANT: Check never returns an "allowed" Result with an error, unless
// Options.FailOpen is set and the service is unavailable. On any error it
// returns BOTH the error and a Result with Allowed=false (and Err set to
// the error), so a caller that ignores the error still does not send:
//
//	res, err := c.Check(ctx, req) // err logged elsewhere, or not at all
//	if !res.Allowed {
//		return // suppressed, or no answer
//	}
//
// A 503 and connection failures are retried (Options.MaxAttempts), each
// attempt bounded by Options.Timeout; ctx bounds the whole call. A 4xx is
// returned at once as an *APIError; an invalid identifier is a 400 whose
// Field names it, e.g. "identifiers[1].value".
func (c *Client) Check(ctx context.Context, req CheckRequest) (Result, error) {
	body, err := json.Marshal(req)
	if err != nil {
		err = opError("check", fmt.Errorf("encode request: %w", err))
		return c.failed(err), err
	}
	var ans wireResult
	if err := c.postJSON(ctx, "v1/check", c.opts.Timeout, body, maxCheckResponse, &ans); err != nil {
		err = opError("check", err)
		return c.failed(err), err
	}
	if ans.Allowed == nil {
		err := opError("check", errors.New("response has no \"allowed\""))
		return c.failed(err), err
	}
	return Result{Allowed: *ans.Allowed, Suppression: ans.Suppression}, nil
}

// CheckBatch checks many contacts for the same send and returns one Result
// per contact, in the order of req.Contacts.
//
// It sends at most Options.BatchSize contacts per request, up to
// Options.BatchConcurrency requests at a time, each retried like Check and
// bounded by Options.BatchTimeout. A contact the server rejects (an
// invalid identifier) gets Allowed=false and Err set to an *APIError whose
// Field is relative to req.Contacts; the rest are answered normally and
// the call returns no error for it.
//
// IMPORTANT: like Check, CheckBatch fails closed. If a request fails, it
// stops sending further ones and returns an error together with a full
// slice: contacts already answered keep their answer, every other contact
// gets Allowed=false (unless Options.FailOpen applies) and Err set. A
// caller that ignores the error still sends only to contacts positively
// allowed.
func (c *Client) CheckBatch(ctx context.Context, req BatchRequest) ([]Result, error) {
	n := len(req.Contacts)
	results := make([]Result, n)
	size := c.opts.BatchSize
	answered, err := c.chunked(ctx, n, size, "contacts", func(ctx context.Context, lo, hi int) error {
		return splitTooLarge(lo, hi, func(lo, hi int) error { return c.checkChunk(ctx, req, lo, hi, results[lo:hi]) })
	})
	if err != nil {
		err = opError("check batch", err)
		for i := range results {
			if !answered[i/size] {
				results[i] = c.failed(err)
				results[i].Ref = req.Contacts[i].Ref
			}
		}
	}
	return results, err
}

// chunked calls send for each chunk [lo, hi) of n items, at most size
// long, up to Options.BatchConcurrency at a time. The
// first failure (naming the range of items, "contacts 3 to 5") stops
// further chunks from being sent; answered says which chunks succeeded, so
// the caller can mark the items of the others.
func (c *Client) chunked(ctx context.Context, n, size int, items string, send func(ctx context.Context, lo, hi int) error) (answered []bool, err error) {
	if n == 0 {
		return nil, nil
	}
	chunks := (n + size - 1) / size
	answered = make([]bool, chunks)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	sem := make(chan struct{}, c.opts.BatchConcurrency)
launch:
	for i := range chunks {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break launch
		}
		if ctx.Err() != nil {
			// A chunk failed while we waited for a slot: further
			// requests would be wasted.
			<-sem
			break
		}
		lo, hi := i*size, min(n, (i+1)*size)
		wg.Go(func() {
			defer func() { <-sem }()
			err := send(ctx, lo, hi)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				answered[i] = true
				return
			}
			if firstErr == nil {
				firstErr = fmt.Errorf("%s %d to %d: %w", items, lo, hi-1, err)
				cancel()
			}
		})
	}
	wg.Wait()

	if firstErr == nil {
		for _, ok := range answered {
			if !ok {
				// Only the caller's ctx ends the launch loop early
				// without a chunk error.
				return answered, context.Cause(ctx)
			}
		}
	}
	return answered, firstErr
}

// splitTooLarge calls send for [lo, hi), splitting the range in halves
// while the server answers 413 (too many match keys, or too large a body
// for one request): a limit is a reason to send less at once, never to
// fail.
func splitTooLarge(lo, hi int, send func(lo, hi int) error) error {
	err := send(lo, hi)
	var ae *APIError
	if hi-lo < 2 || !errors.As(err, &ae) || ae.Status != http.StatusRequestEntityTooLarge {
		return err
	}
	mid := lo + (hi-lo)/2
	if err := splitTooLarge(lo, mid, send); err != nil {
		return err
	}
	return splitTooLarge(mid, hi, send)
}

// checkChunk sends contacts [lo, hi) and, only if the whole answer is
// sound, writes it to out, so that a failed chunk leaves out untouched.
func (c *Client) checkChunk(ctx context.Context, req BatchRequest, lo, hi int, out []Result) error {
	req.Contacts = req.Contacts[lo:hi]
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	var ans struct {
		Results []wireResult `json:"results"`
	}
	if err := c.postJSON(ctx, "v1/check/batch", c.opts.BatchTimeout, body, maxBatchResponse, &ans); err != nil {
		return err
	}
	if len(ans.Results) != len(req.Contacts) {
		return fmt.Errorf("response has %d results for %d contacts", len(ans.Results), len(req.Contacts))
	}
	for i, r := range ans.Results {
		// Refs are how we would notice the server answering out of
		// order; answers must line up with contacts or none is used.
		if want := req.Contacts[i].Ref; want != "" && r.Ref != want {
			return fmt.Errorf("result %d has ref %q, want %q", i, r.Ref, want)
		}
		if r.Allowed == nil && r.Error == nil {
			return fmt.Errorf("result %d has no \"allowed\"", i)
		}
	}
	for i, r := range ans.Results {
		res := Result{Ref: req.Contacts[i].Ref, Suppression: r.Suppression}
		if r.Error != nil {
			// A rejected contact is never allowed, FailOpen or not: it
			// is a bad identifier, not an outage.
			e := r.Error.apiError(0)
			e.Field = shiftIndex(e.Field, "contacts[", lo)
			res.Err = e
		} else {
			res.Allowed = *r.Allowed
		}
		out[i] = res
	}
	return nil
}

// shiftIndex rewrites "contacts[k]..." (list "contacts[") to
// "contacts[k+offset]..." so that a field names the item in the caller's
// request, not in the chunk that was sent.
func shiftIndex(field, list string, offset int) string {
	rest, ok := strings.CutPrefix(field, list)
	if !ok || offset == 0 {
		return field
	}
	num, tail, ok := strings.Cut(rest, "]")
	if !ok {
		return field
	}
	k, err := strconv.Atoi(num)
	if err != nil {
		return field
	}
	return list + strconv.Itoa(k+offset) + "]" + tail
}
