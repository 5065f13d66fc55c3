package webhook

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/suppressd/suppressd/suppression"
)

// maxMessageIDLen is the schema's bound on context.message_id.
const maxMessageIDLen = 256

// events turns a delivery's opt-outs into events, the same way for every
// provider. An opt-out whose address cannot be normalised, or that makes no
// valid event, is skipped and counted as ignored: retrying would not mend
// it, and refusing the request would hold back the other opt-outs in it.
func (h *handler) events(c *common, opts []optOut, now time.Time, res *result) []suppression.Event {
	events := make([]suppression.Event, 0, len(opts))
	for i, o := range opts {
		e, err := c.event(o, now)
		if err != nil {
			// The error names the field and the rule, never the value
			// (suppression.IdentifierError, suppression.EventError).
			h.logger.Warn("webhook opt-out skipped", "provider", c.name, "index", i, "event_id", e.ID, "err", err)
			res.ignored++
			continue
		}
		events = append(events, e)
	}
	return events
}

// event builds the event of one opt-out.
func (c *common) event(o optOut, now time.Time) (suppression.Event, error) {
	id := o.id
	if len(id) > suppression.MaxIDLen {
		d := sha256.Sum256([]byte(id))
		id = "sha256:" + hex.EncodeToString(d[:])
	}
	e := suppression.Event{ID: id, Source: c.source, Type: o.typ, Namespace: c.namespace, Origin: suppression.OriginSystem}
	email, err := suppression.NormalizeEmail(o.email)
	if err != nil {
		return e, fmt.Errorf("recipient: %w", err)
	}
	e.Identifiers = []suppression.Identifier{{Type: suppression.IDEmail, Value: email.String()}}
	// The provider's clock says when the person acted; one ahead of ours is
	// clamped to our receive time (never dropped), so that a bad clock
	// cannot outvote a later lift.
	e.OccurredAt = o.at
	if e.OccurredAt.IsZero() || e.OccurredAt.After(now) {
		e.OccurredAt = now
	}
	e.OccurredAt = e.OccurredAt.UTC()
	scopes := o.scopes
	if scopes == nil {
		scopes = c.scopes
	}
	e.Scopes = slices.Clone(scopes)
	if len(o.messageID) <= maxMessageIDLen {
		e.Context.MessageID = o.messageID
	}
	if err := e.Normalize(now); err != nil {
		return e, err
	}
	return e, nil
}

// publish publishes the events in order, skipping those the PublishLog
// already holds, and stops at the first that Kafka does not acknowledge:
// the request is then answered 503, and the provider's retry publishes only
// what is left.
func (h *handler) publish(ctx context.Context, c *common, events []suppression.Event, res *result) error {
	// The provider hanging up does not cancel a publish: the opt-out is
	// recorded either way, and its retry is then a duplicate.
	ctx = context.WithoutCancel(ctx)
	for _, e := range events {
		if err := h.publishOne(ctx, c, e, res); err != nil {
			return fmt.Errorf("publish %s: %w", e.ID, err)
		}
	}
	return nil
}

func (h *handler) publishOne(ctx context.Context, c *common, e suppression.Event, res *result) error {
	ctx, cancel := context.WithTimeout(ctx, h.publishTimeout)
	defer cancel()
	// A provider that timed out retries while the first attempt may still be
	// publishing: one at a time per event in this process, so that the
	// second sees the first's record. (Across replicas the PublishLog's
	// check and record are apart; a duplicate there is harmless.)
	unlock, err := h.inflight.lock(ctx, e.Source+"\x00"+e.ID)
	if err != nil {
		return err
	}
	defer unlock()
	seen, err := h.log.Published(ctx, e.Source, e.ID)
	if err != nil {
		// Publishing again is harmless (the merge rule makes a duplicate a
		// no-op); holding back an opt-out because the log is down is not.
		h.logger.Warn("publish log unavailable; publishing anyway", "provider", c.name, "event_id", e.ID, "err", err)
	}
	if seen {
		res.duplicates++
		return nil
	}
	if err := h.pub.Publish(ctx, e); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("no acknowledgement within %s: %w", h.publishTimeout, err)
		}
		return err
	}
	res.published++
	res.eventIDs = append(res.eventIDs, e.ID)
	h.m.published.WithLabelValues(c.name, string(e.Type)).Inc()
	if err := h.log.RecordPublished(ctx, e.Source, e.ID, h.publishedTTL); err != nil {
		// Best effort: a retry would publish the event again, harmlessly.
		h.logger.Warn("could not record the published event", "provider", c.name, "event_id", e.ID, "err", err)
	}
	return nil
}
