package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"time"
	"unicode/utf8"

	"github.com/suppressd/suppressd/suppression"
)

type suppressionJSON struct {
	Scope  suppression.Scope  `json:"scope"`
	Reason suppression.Reason `json:"reason"`
	Origin suppression.Origin `json:"origin"`
	Source string             `json:"source"`
	Since  time.Time          `json:"since"`
}

func toJSON(m suppression.Match) *suppressionJSON {
	return &suppressionJSON{Scope: m.Scope, Reason: m.Reason, Origin: m.Origin, Source: m.Source, Since: m.Since}
}

func parseNamespace(field, ns string) (string, error) {
	if ns == "" {
		return suppression.DefaultNamespace, nil
	}
	if err := suppression.CheckName(ns); err != nil {
		return "", badRequest(field, "%s: %v", field, err)
	}
	return ns, nil
}

func parseSend(channel, purpose, topic string) (suppression.Send, error) {
	send := suppression.Send{Channel: suppression.Channel(channel), Purpose: suppression.Purpose(purpose), Topic: topic}
	if channel == "" {
		return send, badRequest("channel", "channel is required (email, sms, push, ads)")
	}
	if _, err := suppression.ParseChannel(channel); err != nil {
		return send, badRequest("channel", "channel: %v", err)
	}
	if purpose == "" {
		return send, badRequest("purpose", "purpose is required (marketing, advertising, profiling, sale_sharing, transactional)")
	}
	if _, err := suppression.ParsePurpose(purpose); err != nil {
		return send, badRequest("purpose", "purpose: %v", err)
	}
	if topic != "" {
		if err := suppression.CheckName(topic); err != nil {
			return send, badRequest("topic", "topic: %v", err)
		}
	}
	return send, nil
}

// identifier is an identifier of a request: null is not a string here
// either (see text).
type identifier struct {
	Type  text `json:"type"`
	Value text `json:"value"`
}

type identifiers []identifier

// UnmarshalJSON refuses null for a list of identifiers: a batch contact
// would take it for an empty list, which is that contact's error, not the
// request's.
func (ids *identifiers) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return &json.UnmarshalTypeError{Value: "null", Type: reflect.TypeFor[[]any]()}
	}
	return json.Unmarshal(b, (*[]identifier)(ids))
}

// UnmarshalJSON refuses null for an identifier, naming it, as text does
// for a string; anything else decodes as usual, unknown members refused.
func (id *identifier) UnmarshalJSON(b []byte) error {
	type plain identifier
	return strictObject(b, (*plain)(id))
}

// domain returns the identifiers as the domain's.
func (ids identifiers) domain() []suppression.Identifier {
	out := make([]suppression.Identifier, len(ids))
	for i, id := range ids {
		out[i] = suppression.Identifier{Type: suppression.IDType(id.Type), Value: string(id.Value)}
	}
	return out
}

// keysOf appends the storage keys of a contact's identifiers to dst; the
// error names the identifier at fault (field names the JSON path of the
// list, asked only for an error: a batch has a thousand contacts).
func (s *Server) keysOf(dst []suppression.StorageKey, field func() string, ids []suppression.Identifier) ([]suppression.StorageKey, error) {
	keys, err := s.matchKeys(field, ids)
	if err != nil {
		return nil, err
	}
	return s.opts.Keyer.StorageKeys(dst, keys), nil
}

// matchKeys checks a contact's identifiers and expands them.
func (s *Server) matchKeys(field func() string, ids []suppression.Identifier) ([]suppression.MatchKey, error) {
	switch {
	case len(ids) == 0:
		return nil, badRequest(field(), "%s: at least one identifier is required", field())
	case len(ids) > suppression.MaxIdentifiers:
		return nil, &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Field: field(),
			Message: fmt.Sprintf("%s: at most %d identifiers per contact, got %d", field(), suppression.MaxIdentifiers, len(ids))}
	}
	keys, err := s.opts.Normalizer.Expand(ids...)
	var ee *suppression.ExpandError
	if errors.As(err, &ee) {
		bad := ee.Invalid[0]
		f := fmt.Sprintf("%s[%d]", field(), bad.Index)
		if !ids[bad.Index].Type.Valid() {
			return nil, badRequest(f+".type", "%s.type: unknown identifier type %q (want email, phone, user_id, maid, email_sha256, phone_sha256)", f, ids[bad.Index].Type)
		}
		// The message names the type and the problem, never the value.
		return nil, badRequest(f+".value", "%s.value: %v", f, bad.Err)
	}
	return keys, err
}

// read asks the store, within the deadline; any failure is a 503. A read
// during which the request's own context ended (the client went away, or
// the server is shutting down) is not the store's failure, whether it was
// cut short or answered late: it is counted apart and answered 499, which
// nobody reads.
func (s *Server) read(ctx context.Context, ns string, keys []suppression.StorageKey) ([]suppression.Record, error) {
	rctx := ctx
	ctx, cancel := context.WithTimeout(ctx, s.opts.StoreTimeout)
	defer cancel()
	recs, err := s.store.Get(ctx, ns, keys)
	if rctx.Err() != nil {
		s.m.canceled.Inc()
		s.log.Debug("request canceled while the store was read", "keys", len(keys), "err", context.Cause(rctx))
		return nil, errClientGone
	}
	if err != nil {
		s.m.storeErr.Inc()
		s.log.Warn("store read failed; answering 503", "keys", len(keys), "reason", suppression.StoreErrorReason(err), "err", err)
		return nil, unavailable(s.opts.RetryAfter)
	}
	return recs, nil
}

// sendFields are the members that describe the send, shared by the check
// requests.
type sendFields struct {
	Namespace text `json:"namespace"`
	Channel   text `json:"channel"`
	Purpose   text `json:"purpose"`
	Topic     text `json:"topic"`
}

func (f sendFields) parse() (string, suppression.Send, error) {
	ns, err := parseNamespace("namespace", string(f.Namespace))
	if err != nil {
		return "", suppression.Send{}, err
	}
	send, err := parseSend(string(f.Channel), string(f.Purpose), string(f.Topic))
	return ns, send, err
}

type checkRequest struct {
	sendFields
	Identifiers identifiers `json:"identifiers"`
}

type checkResponse struct {
	Allowed     bool             `json:"allowed"`
	Suppression *suppressionJSON `json:"suppression,omitempty"`
}

func (s *Server) check(w http.ResponseWriter, r *http.Request) error {
	var req checkRequest
	if err := decodeJSON(w, r, s.opts.MaxBody, &req); err != nil {
		return err
	}
	ns, send, err := req.parse()
	if err != nil {
		return err
	}
	keys, err := s.keysOf(nil, named("identifiers"), req.Identifiers.domain())
	if err != nil {
		s.m.checks.WithLabelValues("invalid").Inc()
		return err
	}
	recs, err := s.read(r.Context(), ns, keys)
	if err != nil {
		if err != errClientGone {
			s.m.checks.WithLabelValues("unavailable").Inc()
		}
		return err
	}
	resp := checkResponse{Allowed: true}
	if m, ok := suppression.Decide(send, recs); ok {
		resp = checkResponse{Suppression: toJSON(m)}
		s.m.checks.WithLabelValues("suppressed").Inc()
	} else {
		s.m.checks.WithLabelValues("allowed").Inc()
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

type batchContact struct {
	Ref         text        `json:"ref,omitempty"`
	Identifiers identifiers `json:"identifiers"`
}

// UnmarshalJSON refuses null for a contact (see identifier).
func (c *batchContact) UnmarshalJSON(b []byte) error {
	type plain batchContact
	return strictObject(b, (*plain)(c))
}

type batchRequest struct {
	sendFields
	Contacts []batchContact `json:"contacts"`
}

// maxRef bounds a batch contact's ref, in characters.
const maxRef = 256

type batchResult struct {
	Ref         string           `json:"ref,omitempty"`
	Allowed     bool             `json:"allowed"`
	Suppression *suppressionJSON `json:"suppression,omitempty"`
	Error       *errorDetail     `json:"error,omitempty"`
}

func (s *Server) checkBatch(w http.ResponseWriter, r *http.Request) error {
	var req batchRequest
	if err := decodeJSON(w, r, s.opts.MaxBatchBody, &req); err != nil {
		return err
	}
	ns, send, err := req.parse()
	if err != nil {
		return err
	}
	switch n := len(req.Contacts); {
	case n == 0:
		return badRequest("contacts", "contacts: at least one contact is required")
	case n > s.opts.MaxBatch:
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Field: "contacts",
			Message: fmt.Sprintf("contacts: at most %d per batch, got %d; split the batch", s.opts.MaxBatch, n)}
	}
	for i, c := range req.Contacts {
		// A ref is echoed back: bounded, or a batch of one contact could
		// make the server repeat 16 MiB.
		if utf8.RuneCountInString(string(c.Ref)) > maxRef {
			f := fmt.Sprintf("contacts[%d].ref", i)
			return &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Field: f,
				Message: fmt.Sprintf("%s: a ref is at most %d characters", f, maxRef)}
		}
	}
	results := make([]batchResult, len(req.Contacts))
	spans := make([][2]int, len(req.Contacts)) // each contact's keys in all
	all := make([]suppression.StorageKey, 0, len(req.Contacts))
	invalid := 0
	for i, c := range req.Contacts {
		results[i].Ref = string(c.Ref)
		more, err := s.keysOf(all, func() string { return fmt.Sprintf("contacts[%d].identifiers", i) }, c.Identifiers.domain())
		if err != nil {
			e := err.(*Error)
			results[i].Error = &errorDetail{Code: e.Code, Message: e.Message, Field: e.Field}
			spans[i] = [2]int{-1, -1}
			invalid++
			continue
		}
		spans[i] = [2]int{len(all), len(more)}
		all = more
		if len(all) > s.opts.MaxKeys {
			// A request that cannot be read within the store deadline
			// would only ever answer 503: say so now, and how to fix it.
			return &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Field: "contacts",
				Message: fmt.Sprintf("contacts: the batch expands to more than %d match keys (each identifier is up to 4, one per platform form; reached at contact %d); split the batch", s.opts.MaxKeys, i)}
		}
	}
	s.m.checks.WithLabelValues("invalid").Add(float64(invalid))
	recs, err := s.read(r.Context(), ns, all)
	if err != nil {
		if err != errClientGone {
			s.m.checks.WithLabelValues("unavailable").Add(float64(len(req.Contacts) - invalid))
		}
		return err
	}
	allowed, suppressed := 0, 0
	for i := range results {
		if spans[i][0] < 0 {
			continue
		}
		if m, ok := suppression.Decide(send, recs[spans[i][0]:spans[i][1]]); ok {
			results[i].Suppression = toJSON(m)
			suppressed++
		} else {
			results[i].Allowed = true
			allowed++
		}
	}
	s.m.checks.WithLabelValues("allowed").Add(float64(allowed))
	s.m.checks.WithLabelValues("suppressed").Add(float64(suppressed))
	writeJSON(w, http.StatusOK, map[string]any{"results": results})
	return nil
}

type lookupRequest struct {
	Namespace   text        `json:"namespace"`
	Identifiers identifiers `json:"identifiers"`
}

type registerJSON struct {
	Action string             `json:"action"`
	Reason suppression.Reason `json:"reason"`
	Origin suppression.Origin `json:"origin"`
	Source string             `json:"source"`
	At     time.Time          `json:"at"`
}

type scopeJSON struct {
	Scope      suppression.Scope `json:"scope"`
	Suppressed bool              `json:"suppressed"`
	Registers  []registerJSON    `json:"registers"`
}

type keyJSON struct {
	Identifier int         `json:"identifier"`
	Key        string      `json:"key"`
	Platforms  []string    `json:"platforms"`
	Scopes     []scopeJSON `json:"scopes"`
}

// lookup answers the access right: everything held about some identifiers.
func (s *Server) lookup(w http.ResponseWriter, r *http.Request) error {
	var req lookupRequest
	if err := decodeJSON(w, r, s.opts.MaxBody, &req); err != nil {
		return err
	}
	ns, err := parseNamespace("namespace", string(req.Namespace))
	if err != nil {
		return err
	}
	ids := req.Identifiers.domain()
	if _, err := s.matchKeys(named("identifiers"), ids); err != nil {
		return err
	}
	// Per identifier, its forms and the platforms hashing each: one key
	// per form, or the digest itself for a pre-hashed identifier.
	var (
		keys  []suppression.StorageKey
		infos []keyJSON
	)
	for i, id := range ids {
		mks, _ := s.opts.Normalizer.Expand(id)
		var platforms [][]string
		if !id.Type.Hashed() {
			vs, _ := s.opts.Normalizer.Variants(id)
			for _, v := range vs {
				platforms = append(platforms, v.Platforms)
			}
		}
		for j, k := range mks {
			info := keyJSON{Identifier: i, Key: k.String(), Platforms: []string{}, Scopes: []scopeJSON{}}
			if j < len(platforms) && platforms[j] != nil {
				info.Platforms = platforms[j]
			}
			keys = append(keys, s.opts.Keyer.StorageKey(k))
			infos = append(infos, info)
		}
	}
	recs, err := s.read(r.Context(), ns, keys)
	if err != nil {
		return err
	}
	for i, rec := range recs {
		for _, scope := range rec.Scopes() {
			st := rec[scope]
			sj := scopeJSON{Scope: scope, Suppressed: st.Suppressed()}
			for _, reg := range st {
				sj.Registers = append(sj.Registers, registerJSON{
					Action: reg.Action.String(), Reason: reg.Reason, Origin: reg.Origin, Source: reg.Source, At: reg.Stamp.Time(),
				})
			}
			infos[i].Scopes = append(infos[i].Scopes, sj)
		}
	}
	if infos == nil {
		infos = []keyJSON{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": infos})
	return nil
}

// named is a field's name for keysOf and matchKeys.
func named(field string) func() string { return func() string { return field } }
