package publish

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
	"github.com/suppressd/suppressd/suppression"
)

func unsubscribe(id, email string) suppression.Event {
	return suppression.Event{ID: id, Source: "/test", Type: suppression.EventUnsubscribe, OccurredAt: time.Now().Add(-time.Minute),
		Identifiers: []suppression.Identifier{{Type: suppression.IDEmail, Value: email}},
		Scopes:      []suppression.Scope{"email"}, Origin: suppression.OriginRecipient}
}

// TestPublishMetrics publishes to the real broker, to a broker that is not
// there, and an event that cannot be published at all: each is counted by
// type and outcome, and the Kafka round trips are timed.
func TestPublishMetrics(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topic := testkafka.Unique("publish")
	testkafka.CreateTopic(ctx, t, brokers[0], topic, 1)
	topics := Topics{Unsubscribes: topic, Consent: topic, Erasure: topic, Admin: topic}

	reg := prometheus.NewRegistry()
	w := NewWriter(brokers, nil)
	defer w.Close()
	p := New(w, topics, suppression.Normalizer{}, 10*time.Second, reg)
	require.NoError(t, p.Publish(ctx, unsubscribe("ok-1", "ok@example.org")))
	gpc := unsubscribe("ok-2", "ok@example.org")
	gpc.Type, gpc.Scopes = suppression.EventGPC, nil
	require.NoError(t, p.Publish(ctx, gpc))
	require.Error(t, p.Publish(ctx, unsubscribe("bad-1", "not an address")))
	require.Len(t, testkafka.ReadAll(ctx, t, brokers, topic, 1, 2), 2, "the two valid events are on the topic")

	// A broker that does not answer: a port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gone := l.Addr().String()
	require.NoError(t, l.Close())
	downReg := prometheus.NewRegistry()
	down := NewWriter([]string{gone}, nil)
	defer down.Close()
	pd := New(down, topics, suppression.Normalizer{}, time.Second, downReg)
	err = pd.Publish(ctx, unsubscribe("down-1", "ok@example.org"))
	require.True(t, errors.Is(err, ErrUnavailable), "%v", err)

	require.Equal(t, map[string]float64{
		"unsubscribe/published": 1,
		"gpc/published":         1,
		"unsubscribe/invalid":   1,
	}, counts(t, reg))
	require.Equal(t, map[string]float64{"unsubscribe/failed": 1}, counts(t, downReg))
	// Only what reached for Kafka is timed.
	require.Equal(t, map[string]uint64{"published": 2}, timings(t, reg))
	require.Equal(t, map[string]uint64{"failed": 1}, timings(t, downReg))
}

// counts reads suppressd_publish_events_total by "type/outcome".
func counts(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	each(t, reg, "suppressd_publish_events_total", func(l map[string]string, value float64, _ uint64) {
		out[l["type"]+"/"+l["outcome"]] = value
	})
	return out
}

// timings reads the sample counts of suppressd_publish_duration_seconds by
// outcome.
func timings(t *testing.T, reg *prometheus.Registry) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	each(t, reg, "suppressd_publish_duration_seconds", func(l map[string]string, _ float64, n uint64) {
		out[l["outcome"]] = n
	})
	return out
}

// each calls fn with every series of a metric: its labels, a counter's
// value, a histogram's sample count.
func each(t *testing.T, reg *prometheus.Registry, name string, fn func(labels map[string]string, value float64, samples uint64)) {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			fn(l, m.GetCounter().GetValue(), m.GetHistogram().GetSampleCount())
		}
	}
}
