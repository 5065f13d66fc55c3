package consumer

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/suppressd/suppressd/ledger"
	"github.com/suppressd/suppressd/schemas"
	"github.com/suppressd/suppressd/suppression"
)

// Ingest is the first stage: intake events in, ledger records out. Each
// valid event becomes one record, keyed by its primary storage key so one
// person's records keep their order; invalid events, and an unsuppress from
// any topic but the admin one, become dead letters.
type Ingest struct {
	Validator  *schemas.Validator
	Normalizer suppression.Normalizer
	Keyer      suppression.Keyer
	// Ledger writes to the ledger topic with acks from all in-sync replicas.
	Ledger MessageWriter
	// AdminTopic is the only topic an unsuppress is accepted from (Kafka
	// ACLs guard who may write to it). Empty: none is.
	AdminTopic string
}

// Prepare implements Handler.
func (in *Ingest) Prepare(b *Batch, now time.Time) {
	msgs := make([]kafka.Message, 0, len(b.Msgs))
	var keys []suppression.StorageKey
	for _, msg := range b.Msgs {
		rec, err := in.record(msg, now, &keys)
		if err != nil {
			b.Dead = append(b.Dead, DeadLetter{Msg: msg, Err: err})
			continue
		}
		value, err := ledger.Encode(&rec)
		if err != nil {
			b.Dead = append(b.Dead, DeadLetter{Msg: msg, Err: fmt.Errorf("ledger record: %w", err)})
			continue
		}
		msgs = append(msgs, kafka.Message{Key: rec.Keys[0][:], Value: value, Time: rec.Reference})
		b.Events = append(b.Events, EventInfo{Type: rec.Type, OccurredAt: rec.OccurredAt, Reference: rec.Reference, Clamped: rec.Clamped})
	}
	b.Work = msgs
}

// record decodes one intake message into its ledger record.
func (in *Ingest) record(msg kafka.Message, now time.Time, keys *[]suppression.StorageKey) (ledger.Record, error) {
	ref := Reference(msg.Time, now)
	d, err := in.Validator.Decode(msg.Value, ref, in.Normalizer)
	if err != nil {
		return ledger.Record{}, err
	}
	if d.Event.Type == suppression.EventUnsuppress && (in.AdminTopic == "" || msg.Topic != in.AdminTopic) {
		// Lifting a suppression, sticky ones included, is an operator's
		// act: only the admin topic, which the API's admin scope writes to
		// and Kafka ACLs guard, may carry it.
		return ledger.Record{}, fmt.Errorf("%w: type: an unsuppress is accepted only from the admin topic (%s), not from %s",
			suppression.ErrInvalidEvent, orNone(in.AdminTopic), msg.Topic)
	}
	*keys = in.Keyer.StorageKeys((*keys)[:0], d.Keys)
	return ledger.FromEvent(&d.Event, *keys, ref), nil
}

func orNone(s string) string {
	if s == "" {
		return "none configured"
	}
	return s
}

// Do implements Handler: the batch's records are on the ledger once every
// in-sync replica has them. Writing them again is harmless.
func (in *Ingest) Do(ctx context.Context, b *Batch) (int, error) {
	msgs := b.Work.([]kafka.Message)
	if len(msgs) == 0 {
		return 0, nil
	}
	if err := in.Ledger.WriteMessages(ctx, msgs...); err != nil {
		return 0, fmt.Errorf("write %d ledger records: %w", len(msgs), err)
	}
	return 0, nil
}

// Apply is the second stage: ledger records in, the store's records out,
// by the merge rule.
type Apply struct {
	Store suppression.Store
}

// applyWork is a prepared apply batch.
type applyWork struct {
	writes []suppression.Write
}

// Prepare implements Handler. A record this build cannot read (a newer
// version, a corrupt one) goes to the dead-letter topic: it is never
// silently skipped, and it does not block its partition.
func (a *Apply) Prepare(b *Batch, _ time.Time) {
	w := &applyWork{}
	for _, msg := range b.Msgs {
		rec, err := ledger.Decode(msg.Value)
		if err == ledger.ErrGenesis {
			continue
		}
		if err != nil {
			b.Dead = append(b.Dead, DeadLetter{Msg: msg, Err: err})
			continue
		}
		w.writes = rec.AppendWrites(w.writes)
		b.Events = append(b.Events, EventInfo{Type: rec.Type, OccurredAt: rec.OccurredAt, Reference: rec.Reference})
	}
	b.Work = w
}

// Do implements Handler.
func (a *Apply) Do(ctx context.Context, b *Batch) (int, error) {
	w := b.Work.(*applyWork)
	if len(w.writes) == 0 {
		return 0, nil
	}
	return a.Store.Apply(ctx, w.writes)
}
