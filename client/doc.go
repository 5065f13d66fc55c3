// Package client is the Go client for the suppressd HTTP API (docs/api.md):
// the email sending service asks it whether a contact may be mailed, and the
// ad-audience exporter streams hashed identifiers through it to drop the
// suppressed ones before an upload.
//
// # Fail closed
//
// Sending to someone who opted out is the failure this service exists to
// prevent, so the client fails closed: whenever it cannot get an answer
// (timeout, connection refused, 503, a malformed response, a bad request,
// a cancelled context) the Result it returns says Allowed=false, and the
// error says why. A caller that forgets to look at the error still does the
// safe thing:
//
//	res, err := c.Check(ctx, req)
//	if err != nil {
//		logger.Warn("suppression check failed, not sending", "err", err)
//	}
//	if !res.Allowed {
//		return // suppressed, or no answer: do not send
//	}
//
// [Options.FailOpen] reverses this for outages only (see its documentation
// for why it is dangerous); errors that are the caller's fault, such as a
// 400 or a 401, stay closed even then.
//
// # Errors
//
// Every error a method returns is an [*OpError] whose message names the
// client and the operation once ("suppressd check: HTTP 401 unauthorized:
// a valid API key is required"). Tell them apart with errors.Is against
// [ErrUnavailable] (no answer: retrying later may help), [ErrInvalidRequest],
// [ErrUnauthorized] and [ErrForbidden] (the request is wrong: it will not),
// or errors.As to an [*APIError] for the server's code, message and field.
//
// # Usage
//
//	c, err := client.New("https://suppressd.internal", apiKey, client.Options{})
//	res, err := c.Check(ctx, client.CheckRequest{
//		Identifiers: []client.Identifier{{Type: client.TypeEmail, Value: "alice@example.org"}},
//		Channel:     client.ChannelEmail,
//		Purpose:     client.PurposeMarketing,
//		Topic:       "newsletter",
//	})
//
// [Client.CheckBatch] checks many contacts at once, splitting them into
// requests of at most 10,000 contacts, [Client.Links] mints the one-click
// unsubscribe headers of a send's recipients the same way,
// [Client.Filter] streams an audience file of SHA-256 hashes through
// /v1/filter in constant memory, and [Client.FilterRows] does the same for
// an ad platform's multi-column customer-list CSV (/v1/filter/rows),
// keeping rows byte for byte.
//
// A Client is safe for concurrent use; create one per process and reuse it
// so that connections are reused.
package client
