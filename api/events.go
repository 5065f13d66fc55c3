package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/suppressd/suppressd/internal/httplimit"
	"github.com/suppressd/suppressd/schemas"
	"github.com/suppressd/suppressd/suppression"
)

// Publisher publishes a validated event; it returns only after Kafka
// acknowledged it from all in-sync replicas.
type Publisher interface {
	// PublishRaw publishes an encoded, validated event.
	PublishRaw(ctx context.Context, typ suppression.EventType, primary suppression.MatchKey, raw []byte) error
	// Publish normalises, encodes and publishes an event.
	Publish(ctx context.Context, e suppression.Event) error
}

// PublishLog remembers which events were published, so a retried request
// publishes nothing twice.
type PublishLog interface {
	Published(ctx context.Context, source, id string) (bool, error)
	RecordPublished(ctx context.Context, source, id string, ttl time.Duration) error
}

// publishedTTL is how long a retry is recognised.
const publishedTTL = 24 * time.Hour

type publishResponse struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// events validates a CloudEvent and publishes it.
func (s *Server) events(w http.ResponseWriter, r *http.Request) error {
	if s.opts.Publisher == nil || s.opts.Validator == nil {
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "publishing is not enabled on this server"}
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") &&
		!strings.HasPrefix(ct, "application/cloudevents+json") && !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		return &Error{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Message: "send application/json or application/cloudevents+json"}
	}
	if err := identityOnly(r); err != nil {
		return err
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, schemas.MaxEventBytes))
	if err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: fmt.Sprintf("an event is at most %d bytes", schemas.MaxEventBytes)}
		}
		if httplimit.IsTimeout(err) {
			return tooSlow(err)
		}
		return badRequest("", "reading the body failed")
	}
	// The raw bytes are what is published: they must be the JSON they
	// claim to be, UTF-8 (RFC 8259), not whatever a decoder makes of them.
	if err := validUTF8(raw); err != nil {
		return err
	}
	d, err := s.opts.Validator.Decode(raw, time.Now(), s.opts.Normalizer)
	if err != nil {
		var se *schemas.Error
		if errors.As(err, &se) {
			return &Error{Status: http.StatusBadRequest, Code: "invalid_request", Violations: se.Violations,
				Message: fmt.Sprintf("invalid event: %d problem(s), see violations", len(se.Violations))}
		}
		return err
	}
	e := d.Event
	if e.Type == suppression.EventUnsuppress {
		// Lifting a suppression, sticky ones included, is an operator's act.
		if k := keyOf(r); k == nil || !k.has(ScopeAdmin) {
			return forbidden(ScopeAdmin)
		}
	}
	if s.opts.PublishLog != nil {
		ctx, cancel := context.WithTimeout(r.Context(), s.opts.StoreTimeout)
		seen, err := s.opts.PublishLog.Published(ctx, e.Source, e.ID)
		cancel()
		if err != nil {
			return unavailable(s.opts.RetryAfter)
		}
		if seen {
			writeJSON(w, http.StatusAccepted, publishResponse{ID: e.ID, Duplicate: true})
			return nil
		}
	}
	if err := s.opts.Publisher.PublishRaw(r.Context(), e.Type, d.Keys[0], raw); err != nil {
		s.log.Warn("publish failed; answering 503", "event_id", e.ID, "err", err)
		return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", RetryAfter: s.opts.RetryAfter,
			Message: "Kafka did not acknowledge the event; nothing was published, retry with the same id"}
	}
	if s.opts.PublishLog != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.opts.StoreTimeout)
		// Best effort: if this fails, a retry publishes the same event
		// again, which the merge rule makes harmless.
		if err := s.opts.PublishLog.RecordPublished(ctx, e.Source, e.ID, publishedTTL); err != nil {
			s.log.Warn("could not record the published event", "event_id", e.ID, "err", err)
		}
		cancel()
	}
	s.log.Info("event published", "event_id", e.ID, "type", e.Type)
	writeJSON(w, http.StatusAccepted, publishResponse{ID: e.ID})
	return nil
}
