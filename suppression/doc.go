// Package suppression is the domain of suppressd: identifiers and the match
// keys they expand into, scopes, reasons, events, the merge rule that folds
// events into per-scope state, and the check rule that decides whether a send
// may go out.
//
// The package does no I/O and knows nothing of Kafka, Redis or HTTP; the
// store, the consumer and the API are built on it.
//
// Nothing raw about a person leaves this package in an error message or a log
// value: errors name the identifier type and what is wrong with it, never the
// value, and Identifier redacts itself when printed or logged.
package suppression
