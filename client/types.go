package client

import "time"

// Identifier types accepted by the API.
const (
	TypeEmail       = "email"
	TypePhone       = "phone"
	TypeUserID      = "user_id"
	TypeMAID        = "maid"
	TypeEmailSHA256 = "email_sha256"
	TypePhoneSHA256 = "phone_sha256"
)

// Channels a send can go out on.
const (
	ChannelEmail = "email"
	ChannelSMS   = "sms"
	ChannelPush  = "push"
	ChannelAds   = "ads"
)

// Purposes a send can serve. Transactional sends are stopped only by
// erasure, complaints and hard bounces.
const (
	PurposeMarketing     = "marketing"
	PurposeAdvertising   = "advertising"
	PurposeProfiling     = "profiling"
	PurposeSaleSharing   = "sale_sharing"
	PurposeTransactional = "transactional"
)

// Ad platforms for [FilterRequest.Platform]; the server uses the value only
// for metrics.
const (
	PlatformGoogle   = "google"
	PlatformMeta     = "meta"
	PlatformTikTok   = "tiktok"
	PlatformX        = "x"
	PlatformLinkedIn = "linkedin"
	PlatformSnap     = "snap"
)

// Identifier is one way of naming a person. Values only ever travel in
// request bodies, never in URLs, and the client never puts them in errors.
type Identifier struct {
	Type  string `json:"type"` // one of the Type constants
	Value string `json:"value"`
}

// Suppression is the stored opt-out that stops a send.
type Suppression struct {
	// Scope is "*", a channel, a purpose or "topic:<name>".
	Scope string `json:"scope"`
	// Reason is unsubscribe, consent_withdrawn, objection, restriction,
	// erasure, complaint, hard_bounce, gpc, minor, admin or import.
	Reason string `json:"reason"`
	// Origin is recipient, customer, admin or system.
	Origin string `json:"origin"`
	// Source says where the opt-out came from, e.g. "/unsubscribe-link".
	Source string `json:"source"`
	// Since is when the person acted.
	Since time.Time `json:"since"`
}

// CheckRequest asks whether one contact, known by one or more identifiers,
// may receive a send.
type CheckRequest struct {
	// Namespace is optional; the server uses "default" when empty.
	Namespace   string       `json:"namespace,omitempty"`
	Identifiers []Identifier `json:"identifiers"`
	// Channel is required: one of the Channel constants.
	Channel string `json:"channel"`
	// Purpose is required: one of the Purpose constants.
	Purpose string `json:"purpose"`
	// Topic is optional, the list or newsletter being sent.
	Topic string `json:"topic,omitempty"`
}

// Contact is one entry of a [BatchRequest].
type Contact struct {
	// Ref is optional, the caller's own reference, echoed in [Result.Ref].
	Ref         string       `json:"ref,omitempty"`
	Identifiers []Identifier `json:"identifiers"`
}

// BatchRequest asks about many contacts for the same send. It may hold any
// number of contacts: [Client.CheckBatch] splits it into requests the
// server accepts.
type BatchRequest struct {
	Namespace string    `json:"namespace,omitempty"` // optional, server default "default"
	Channel   string    `json:"channel"`             // required
	Purpose   string    `json:"purpose"`             // required
	Topic     string    `json:"topic,omitempty"`     // optional
	Contacts  []Contact `json:"contacts"`
}

// Result is the answer for one contact.
//
// The zero Result is "not allowed", so a Result that was never filled in
// is safe too.
type Result struct {
	// Ref is the contact's Ref, for batches.
	Ref string
	// Allowed reports whether the send may go ahead. It is false whenever
	// Err is set, unless Options.FailOpen applied to an outage.
	Allowed bool
	// Suppression is what stops the send, when the server found one.
	Suppression *Suppression
	// Err is set when this Result is not the server's verdict: a contact
	// the server rejected inside a batch (an *APIError, e.g. an invalid
	// identifier), or the request that should have answered it failed.
	Err error
}

// FilterRequest describes an audience to stream through [Client.Filter].
// Every field ends up in the URL's query, so none may be personal.
type FilterRequest struct {
	// Type is required: TypeEmailSHA256 or TypePhoneSHA256.
	Type string
	// Platform is optional (one of the Platform constants), for metrics.
	Platform string
	// Channel is optional; the server default is "ads".
	Channel string
	// Purpose is optional; the server default is "advertising".
	Purpose string
	// Topic is optional.
	Topic string
	// Namespace is optional; the server default is "default".
	Namespace string
	// Gzip compresses the upload on the fly (Content-Encoding: gzip). Hex
	// hashes compress to about half, worth it for large audiences.
	Gzip bool
	// Checkpoint, when set, is called after each chunk the server has
	// answered (about 2,000 lines), from the goroutine that called
	// Filter, once out holds every allowed line of it: for a progress
	// display, and to resume a failed run (see FilterCheckpoint).
	Checkpoint func(FilterCheckpoint)
}

// Templates for [FilterRowsRequest.Template]: ad platforms' customer-list
// files, whose documented headers say which columns hold identifiers
// (docs/api.md lists them).
const (
	TemplateGoogle   = "google"
	TemplateMeta     = "meta"
	TemplateTikTok   = "tiktok"
	TemplateLinkedIn = "linkedin"
)

// Column maps a CSV column, by its header, to an identifier type.
type Column struct {
	Type   string // one of the Type constants
	Header string // the column's header; it may not contain a comma
}

// FilterRowsRequest describes a CSV audience to stream through
// [Client.FilterRows]. Every field ends up in the URL's query, so none may
// be personal.
type FilterRowsRequest struct {
	// Template names the platform whose file this is (a Template
	// constant); or Columns maps the columns explicitly. Exactly one is
	// required.
	Template string
	Columns  []Column
	// Platform is optional (one of the Platform constants), for metrics;
	// the server defaults it to the template's.
	Platform string
	// Channel is optional; the server default is "ads".
	Channel string
	// Purpose is optional; the server default is "advertising".
	Purpose string
	// Topic is optional.
	Topic string
	// Namespace is optional; the server default is "default".
	Namespace string
	// Gzip compresses the upload on the fly (Content-Encoding: gzip).
	Gzip bool
	// Checkpoint, when set, is called after each chunk of rows the server
	// has answered, as for FilterRequest.
	Checkpoint func(FilterCheckpoint)
}

// FilterSummary is the server's count for a completed filter stream.
type FilterSummary struct {
	Total      int64 // lines (rows) the server counted; blank lines are ignored
	Allowed    int64 // lines (rows) written to out
	Suppressed int64 // lines (rows) dropped because they are suppressed
	Malformed  int64 // lines (rows) dropped because they could not be read
	// MalformedLines are the lines the first 100 malformed rows start on
	// (FilterRows only): where to look in the file.
	MalformedLines []int64
}

// FilterCheckpoint is how far a filter stream has been answered. Every
// line (row) of the input before InputBytes is answered, and out holds
// exactly the first OutputBytes bytes of the answer, all of them allowed
// lines (rows) of that part of the input: a failed run can be resumed by
// keeping those bytes and filtering the input from InputBytes on (for
// rows, with the header row sent again and its echo dropped).
type FilterCheckpoint struct {
	Total, Allowed, Suppressed, Malformed int64 // answered so far
	// InputBytes is how far in is answered, in bytes of in as given
	// (before Gzip compresses it).
	InputBytes int64
	// InputLines is how many line ends of in lie before InputBytes.
	InputLines int64
	// OutputBytes is how many bytes have been written to out.
	OutputBytes int64
	// MalformedLines are the lines of malformed rows answered since the
	// previous checkpoint (FilterRows only; the first 100 of the stream).
	MalformedLines []int64
}
