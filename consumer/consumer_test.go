package consumer

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
	"github.com/suppressd/suppressd/internal/teststore"
	"github.com/suppressd/suppressd/schemas"
	"github.com/suppressd/suppressd/store/redisstore"
	"github.com/suppressd/suppressd/suppression"
)

var (
	normalizer = suppression.Normalizer{DefaultRegion: "US"}
	testKeyer  = suppression.NewKeyer([]byte("pepper"))
)

// storageKeys returns the storage keys of an email's match keys.
func storageKeys(t testing.TB, email string) []suppression.StorageKey {
	t.Helper()
	keys, err := normalizer.Expand(suppression.Identifier{Type: suppression.IDEmail, Value: email})
	require.NoError(t, err)
	return testKeyer.StorageKeys(nil, keys)
}

// harness runs both stages on topics of their own: intake (h.topic) and
// its admin topic, ledger and dead letters, into a built store.
type harness struct {
	t       *testing.T
	brokers []string
	topic   string
	admin   string
	ledger  string
	dlq     string
	store   *redisstore.Store
	writer  *kafka.Writer
	logs    *testenv.Buffer
	reg     *prometheus.Registry
	ingest  *Consumer
	apply   *Consumer
	stops   []func()   // per stage: ingest, apply
	exited  chan error // a stage's Run returned (before its stop, it should not)
}

// start runs both stages on fresh topics against rdb.
func start(t *testing.T, rdb redis.UniversalClient, opts Options) *harness {
	t.Helper()
	brokers := testenv.KafkaBrokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h := &harness{t: t, brokers: brokers, topic: testkafka.Unique("events"), dlq: testkafka.Unique("dlq"), logs: &testenv.Buffer{}, reg: prometheus.NewRegistry()}
	h.admin, h.ledger = h.topic+"-admin", h.topic+"-ledger"
	testkafka.CreateTopic(ctx, t, brokers[0], h.topic, 3)
	testkafka.CreateTopic(ctx, t, brokers[0], h.admin, 1)
	testkafka.CreateTopic(ctx, t, brokers[0], h.ledger, 3)
	testkafka.CreateTopic(ctx, t, brokers[0], h.dlq, 1)
	h.store = teststore.Build(t, rdb, redisstore.Options{Prefix: teststore.Prefix(), Keying: testKeyer.Fingerprint()})
	h.writer = testkafka.Writer(brokers, "")
	t.Cleanup(func() { _ = h.writer.Close() })
	h.run(t, rdb, opts)
	return h
}

// ingestGroup and applyGroup are the stages' consumer groups.
func (h *harness) ingestGroup() string { return h.topic + "-group" }
func (h *harness) applyGroup() string  { return h.topic + "-apply" }

func (h *harness) run(t *testing.T, _ redis.UniversalClient, opts Options) {
	v, err := schemas.New()
	require.NoError(t, err)
	log := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.reg = prometheus.NewRegistry()
	reader := func(group string, topics ...string) *kafka.Reader {
		return kafka.NewReader(kafka.ReaderConfig{
			Brokers: h.brokers, GroupID: group, GroupTopics: topics,
			StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond, CommitInterval: 0,
			ErrorLogger: testkafka.Logger(t),
		})
	}
	ledgerW := testkafka.Writer(h.brokers, h.ledger)
	ir, ar := reader(h.ingestGroup(), h.topic, h.admin), reader(h.applyGroup(), h.ledger)
	idlq, adlq := testkafka.Writer(h.brokers, h.dlq), testkafka.Writer(h.brokers, h.dlq)
	io, ao := opts, opts
	io.Stage, ao.Stage = "ingest", "apply"
	h.ingest = New(ir, idlq, &Ingest{Validator: v, Normalizer: normalizer, Keyer: testKeyer, Ledger: ledgerW, AdminTopic: h.admin}, io, log, h.reg)
	h.apply = New(ar, adlq, &Apply{Store: h.store}, ao, log, h.reg)
	h.stops, h.exited = nil, make(chan error, 2)
	for _, c := range []struct {
		cons    *Consumer
		closers []interface{ Close() error }
	}{{h.ingest, []interface{ Close() error }{ir, idlq, ledgerW}}, {h.apply, []interface{ Close() error }{ar, adlq}}} {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			err := c.cons.Run(ctx)
			for _, cl := range c.closers {
				_ = cl.Close()
			}
			if ctx.Err() == nil {
				h.exited <- err
			}
			done <- err
		}()
		stopped := false
		h.stops = append(h.stops, func() {
			if stopped {
				return
			}
			stopped = true
			cancel()
			select {
			case err := <-done:
				require.NoError(h.t, err, "Run returns nil on shutdown")
			case <-time.After(30 * time.Second):
				h.t.Fatal("consumer did not stop")
			}
		})
	}
	t.Cleanup(h.stop)
}

// stop stops both stages.
func (h *harness) stop() {
	for _, s := range h.stops {
		s()
	}
}

// stopIngest stops the ingest stage alone.
func (h *harness) stopIngest() { h.stops[0]() }

var evSeq int

// event builds a normalised domain event.
func event(typ suppression.EventType, email string, at time.Time, scopes ...suppression.Scope) suppression.Event {
	evSeq++
	e := suppression.Event{
		ID: fmt.Sprintf("evt-%d-%d", time.Now().UnixNano(), evSeq), Source: "/test", Type: typ, OccurredAt: at,
		Identifiers: []suppression.Identifier{{Type: suppression.IDEmail, Value: email}},
		Scopes:      scopes, Origin: suppression.OriginRecipient,
	}
	switch typ {
	case suppression.EventUnsuppress:
		e.Origin, e.Reason, e.Justification = suppression.OriginAdmin, suppression.ReasonErasure, "ticket 4411: erasure withdrawn"
	case suppression.EventSuppress:
		e.Reason = suppression.ReasonObjection
	}
	if err := e.Normalize(time.Time{}); err != nil {
		panic(err)
	}
	return e
}

// publish publishes events as the publisher does: an unsuppress to the
// admin topic, the rest to the intake topic.
func (h *harness) publish(events ...suppression.Event) {
	h.t.Helper()
	msgs := make([]kafka.Message, len(events))
	for i, e := range events {
		raw, err := schemas.Encode(e)
		require.NoError(h.t, err)
		keys, err := normalizer.Expand(e.Identifiers...)
		require.NoError(h.t, err)
		msgs[i] = kafka.Message{Topic: h.topic, Key: []byte(hex.EncodeToString(keys[0].Hash[:])), Value: raw}
		if e.Type == suppression.EventUnsuppress {
			msgs[i].Topic = h.admin
		}
	}
	h.publishRaw(msgs...)
}

// publishRaw writes messages; one without a topic goes to the intake topic.
func (h *harness) publishRaw(msgs ...kafka.Message) {
	h.t.Helper()
	for i := range msgs {
		if msgs[i].Topic == "" {
			msgs[i].Topic = h.topic
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(h.t, h.writer.WriteMessages(ctx, msgs...))
}

// decide answers a check for an email, straight from the store.
func (h *harness) decide(email string, send suppression.Send) (suppression.Match, bool) {
	h.t.Helper()
	recs, err := h.store.Get(context.Background(), suppression.DefaultNamespace, storageKeys(h.t, email))
	require.NoError(h.t, err)
	return suppression.Decide(send, recs)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// counter reads a metric: events applied to the store and store errors
// are the apply stage's, dead letters the ingest stage's.
func counter(t *testing.T, h *harness, name string, labels ...string) float64 {
	t.Helper()
	switch name {
	case "events":
		return testutil.ToFloat64(h.apply.m.events.WithLabelValues(labels...))
	case "dead":
		return testutil.ToFloat64(h.ingest.m.deadLetters.WithLabelValues(labels...))
	case "store_errors":
		return testutil.ToFloat64(h.apply.m.effectErrors)
	}
	t.Fatalf("no counter %s", name)
	return 0
}

var (
	marketingEmail = suppression.Send{Channel: suppression.ChannelEmail, Purpose: suppression.PurposeMarketing, Topic: "newsletter"}
	profiling      = suppression.Send{Channel: suppression.ChannelAds, Purpose: suppression.PurposeProfiling}
	receipt        = suppression.Send{Channel: suppression.ChannelEmail, Purpose: suppression.PurposeTransactional}
)

func TestEventsBecomeVisible(t *testing.T) {
	for name, rdb := range testenv.RedisClients(t) {
		t.Run(name, func(t *testing.T) {
			h := start(t, rdb, Options{})
			now := time.Now().Add(-time.Minute)
			h.publish(
				event(suppression.EventUnsubscribe, "unsub@example.org", now, "topic:newsletter"),
				event(suppression.EventConsentWithdrawn, "consent@example.org", now, "profiling"),
				event(suppression.EventErasureRequested, "Erase.Me+x@Gmail.com", now),
			)
			eventually(t, "three events applied", func() bool {
				return counter(t, h, "events", "erasure_requested", outcomeApplied) == 1 &&
					counter(t, h, "events", "unsubscribe", outcomeApplied) == 1 &&
					counter(t, h, "events", "consent_withdrawn", outcomeApplied) == 1
			})

			m, ok := h.decide("unsub@example.org", marketingEmail)
			require.True(t, ok)
			require.Equal(t, suppression.Scope("topic:newsletter"), m.Scope)
			require.Equal(t, suppression.ReasonUnsubscribe, m.Reason)
			_, ok = h.decide("unsub@example.org", suppression.Send{Channel: suppression.ChannelEmail, Purpose: suppression.PurposeMarketing, Topic: "offers"})
			require.False(t, ok, "another topic is still allowed")

			m, ok = h.decide("consent@example.org", profiling)
			require.True(t, ok)
			require.Equal(t, suppression.ReasonConsentWithdrawn, m.Reason)
			_, ok = h.decide("consent@example.org", marketingEmail)
			require.False(t, ok, "consent for profiling says nothing of marketing email")

			// Erasure reaches every platform form of the address, and even receipts.
			for _, form := range []string{"erase.me+x@gmail.com", "eraseme@gmail.com", "erase.me@gmail.com"} {
				m, ok = h.decide(form, receipt)
				require.True(t, ok, form)
				require.Equal(t, suppression.ReasonErasure, m.Reason)
				require.Equal(t, suppression.ScopeGlobal, m.Scope)
			}
			// The person acted a minute before the events were published:
			// the freshness counts that minute, the delay (from intake)
			// does not, and the apply stage's delay spans both stages.
			fresh, delay, ingestDelay := histogram(t, h.reg, "suppressd_optout_freshness_seconds", "apply"),
				histogram(t, h.reg, "suppressd_consumer_delay_seconds", "apply"), histogram(t, h.reg, "suppressd_consumer_delay_seconds", "ingest")
			require.EqualValues(t, 3, fresh.GetSampleCount())
			require.EqualValues(t, 3, delay.GetSampleCount())
			require.EqualValues(t, 3, ingestDelay.GetSampleCount())
			require.GreaterOrEqual(t, fresh.GetSampleSum(), 3*60.0)
			require.Less(t, delay.GetSampleSum(), 3*30.0, "the delay starts when the event reached its intake topic")
			require.GreaterOrEqual(t, delay.GetSampleSum(), ingestDelay.GetSampleSum(), "applied after it was ingested")
		})
	}
}

// histogram returns a stage's histogram of the named metric.
func histogram(t *testing.T, reg *prometheus.Registry, name, stage string) *dto.Histogram {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "stage" && l.GetValue() == stage {
					return m.GetHistogram()
				}
			}
		}
	}
	t.Fatalf("no %s{stage=%q}", name, stage)
	return nil
}

// TestOrderingConverges publishes a random history out of order, with
// duplicates, then replays it all, and requires exactly the state in-order
// delivery gives.
func TestOrderingConverges(t *testing.T) {
	for name, rdb := range testenv.RedisClients(t) {
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(11, 12))
			people := []string{"p0@example.org", "p1@example.org", "p2@gmail.com", "p3@example.org"}
			types := []suppression.EventType{suppression.EventUnsubscribe, suppression.EventResubscribe, suppression.EventErasureRequested,
				suppression.EventUnsuppress, suppression.EventComplaint, suppression.EventHardBounce, suppression.EventSuppress}
			base := time.Now().Add(-time.Hour)
			var history []suppression.Event
			for i := 0; i < 80; i++ {
				typ := types[rng.IntN(len(types))]
				scope := []suppression.Scope{"*", "email"}[rng.IntN(2)]
				if typ == suppression.EventErasureRequested {
					scope = "*"
				}
				at := base.Add(time.Duration(rng.IntN(20)) * time.Second) // collisions on purpose
				history = append(history, event(typ, people[rng.IntN(len(people))], at, scope))
			}
			// In order, in Go: what every delivery order must converge to.
			want := map[string][]suppression.Record{}
			for _, p := range people {
				want[p] = make([]suppression.Record, len(storageKeys(t, p)))
			}
			sorted := append([]suppression.Event(nil), history...)
			for _, e := range sorted {
				p := e.Identifiers[0].Value
				for i := range storageKeys(t, p) {
					if want[p][i] == nil {
						want[p][i] = suppression.Record{}
					}
					for _, s := range e.Scopes {
						want[p][i][s], _ = want[p][i][s].Apply(e.Change())
					}
				}
			}

			h := start(t, rdb, Options{BatchSize: 7})
			shuffled := append([]suppression.Event(nil), history...)
			rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			shuffled = append(shuffled, shuffled[:20]...) // duplicates
			h.publish(shuffled...)
			applied := func(n float64) func() bool {
				return func() bool {
					total := 0.0
					for _, typ := range types {
						total += counter(t, h, "events", string(typ), outcomeApplied)
					}
					return total == n
				}
			}
			eventually(t, "every event applied", applied(float64(len(shuffled))))
			check := func(when string) {
				for _, p := range people {
					got, err := h.store.Get(context.Background(), suppression.DefaultNamespace, storageKeys(t, p))
					require.NoError(t, err)
					require.Equal(t, want[p], got, "%s: %s", when, p)
				}
			}
			check("out of order with duplicates")

			// Replaying the whole history changes nothing.
			h.publish(history...)
			eventually(t, "replay applied", applied(float64(len(shuffled)+len(history))))
			check("after replay")
		})
	}
}

func TestMalformedEventIsDeadLetteredAndDoesNotBlock(t *testing.T) {
	rdb := testenv.RedisClients(t)["standalone"]
	h := start(t, rdb, Options{})
	now := time.Now().Add(-time.Minute)
	before := event(suppression.EventUnsubscribe, "before@example.org", now, "email")
	after := event(suppression.EventUnsubscribe, "after@example.org", now, "email")
	rawBefore, _ := schemas.Encode(before)
	rawAfter, _ := schemas.Encode(after)
	bad := []byte(`{"specversion":"1.0","id":"bad-1","source":"/test","type":"io.suppressd.unsubscribe.v1","time":"2026-11-28T10:00:00Z",` +
		`"data":{"identifiers":[{"type":"email","value":"leaky.person@example.org"}],"scopes":["everything"],"origin":"recipient"}}`)
	key := []byte("same-partition") // one key: one partition, in this order
	h.publishRaw(
		kafka.Message{Key: key, Value: rawBefore},
		kafka.Message{Key: key, Value: bad, Headers: []kafka.Header{{Key: "trace", Value: []byte("abc")}}},
		kafka.Message{Key: key, Value: []byte("not json at all")},
		kafka.Message{Key: key, Value: rawAfter},
	)
	eventually(t, "both valid events applied", func() bool {
		return counter(t, h, "events", "unsubscribe", outcomeApplied) == 2
	})
	_, ok := h.decide("after@example.org", marketingEmail)
	require.True(t, ok, "the event after the bad ones is applied")
	require.Equal(t, 2.0, counter(t, h, "dead", h.topic))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dead := testkafka.ReadAll(ctx, t, h.brokers, h.dlq, 1, 2)
	require.Len(t, dead, 2)
	headers := map[string]string{}
	for _, hd := range dead[0].Headers {
		headers[hd.Key] = string(hd.Value)
	}
	require.Equal(t, bad, dead[0].Value, "the event is kept as it was")
	require.Equal(t, key, dead[0].Key)
	require.Equal(t, "abc", headers["trace"], "original headers are kept")
	require.Contains(t, headers[HeaderError], `/data/scopes/0`)
	require.Equal(t, h.topic, headers[HeaderTopic])
	require.NotEmpty(t, headers[HeaderPartition])
	require.NotEmpty(t, headers[HeaderOffset])
	require.NotEmpty(t, headers[HeaderTime])
	require.NotContains(t, headers[HeaderError], "leaky.person")

	// Nothing raw about anyone in the logs.
	h.stop()
	logs := h.logs.String()
	require.Contains(t, logs, "dead-lettering event")
	for _, raw := range []string{"leaky.person", "before@example.org", "after@example.org"} {
		require.NotContains(t, logs, raw)
	}
}

func TestShutdownFinishesTheBatchAndCommits(t *testing.T) {
	rdb := testenv.RedisClients(t)["standalone"]
	h := start(t, rdb, Options{})
	now := time.Now().Add(-time.Minute)
	var evs []suppression.Event
	for i := 0; i < 50; i++ {
		evs = append(evs, event(suppression.EventUnsubscribe, fmt.Sprintf("s%d@example.org", i), now, "email"))
	}
	h.publish(evs...)
	eventually(t, "all applied", func() bool { return counter(t, h, "events", "unsubscribe", outcomeApplied) == 50 })
	h.stop()

	// A new consumer in the same group starts after the committed offsets:
	// it sees only what is published now.
	h.run(t, rdb, Options{})
	h.publish(event(suppression.EventUnsubscribe, "late@example.org", now, "email"))
	eventually(t, "the new event applied", func() bool { return counter(t, h, "events", "unsubscribe", outcomeApplied) >= 1 })
	time.Sleep(500 * time.Millisecond)
	require.Equal(t, 1.0, counter(t, h, "events", "unsubscribe", outcomeApplied), "nothing before the commit was read again")
}

// TestFutureTimesCannotOutvote: the producer sets both an event's time and
// its message's timestamp, so neither bounds a lie. An unsubscribe dated an
// hour ahead is kept (clamped, never dead-lettered), and a resubscribe
// dated an hour ahead cannot outvote the honest unsubscribe that follows it.
func TestFutureTimesCannotOutvote(t *testing.T) {
	h := start(t, testenv.RedisClients(t)["standalone"], Options{})
	ahead := time.Now().Add(time.Hour)
	msg := func(e suppression.Event, ts time.Time) kafka.Message {
		raw, err := schemas.Encode(e)
		require.NoError(t, err)
		return kafka.Message{Key: []byte(e.ID), Value: raw, Time: ts}
	}
	email := suppression.ChannelScope(suppression.ChannelEmail)
	h.publishRaw(msg(event(suppression.EventUnsubscribe, "early.bird@example.org", ahead, email), ahead))
	eventually(t, "the future-dated unsubscribe applied", func() bool { return counter(t, h, "events", "unsubscribe", outcomeApplied) == 1 })
	require.Zero(t, counter(t, h, "dead", h.topic), "an opt-out is never dead-lettered for its timestamp")
	m, ok := h.decide("early.bird@example.org", marketingEmail)
	require.True(t, ok)
	require.False(t, m.Since.After(time.Now()), "dated no later than when it was read")
	require.Equal(t, 1.0, testutil.ToFloat64(h.ingest.m.clamped.WithLabelValues("suppress")))

	// The attack: a resubscribe an hour ahead, message timestamp too.
	h.publishRaw(msg(event(suppression.EventResubscribe, "victim@example.org", ahead, email), ahead))
	eventually(t, "the resubscribe applied", func() bool { return counter(t, h, "events", "resubscribe", outcomeApplied) == 1 })
	require.Equal(t, 1.0, testutil.ToFloat64(h.ingest.m.clamped.WithLabelValues("lift")))
	time.Sleep(5 * time.Millisecond)
	// The person unsubscribes for real, a moment later.
	h.publish(event(suppression.EventUnsubscribe, "victim@example.org", time.Now(), email))
	eventually(t, "the honest unsubscribe applied", func() bool { return counter(t, h, "events", "unsubscribe", outcomeApplied) == 2 })
	_, ok = h.decide("victim@example.org", marketingEmail)
	require.True(t, ok, "the honest unsubscribe after a future-dated resubscribe suppresses")
}

// TestUnsuppressOnlyFromTheAdminTopic: an unsuppress written to an intake
// topic (by any producer that can write there) is a dead letter and lifts
// nothing; the same event on the admin topic, which only suppressd's API
// and the operators may write, lifts the erasure.
func TestUnsuppressOnlyFromTheAdminTopic(t *testing.T) {
	rdb := testenv.RedisClients(t)["standalone"]
	h := start(t, rdb, Options{})
	now := time.Now().Add(-time.Minute)
	h.publish(event(suppression.EventErasureRequested, "erased@example.org", now.Add(-time.Second)))
	eventually(t, "the erasure applied", func() bool { return counter(t, h, "events", "erasure_requested", outcomeApplied) == 1 })

	lift := event(suppression.EventUnsuppress, "erased@example.org", now, suppression.ScopeGlobal)
	raw, err := schemas.Encode(lift)
	require.NoError(t, err)
	h.publishRaw(kafka.Message{Topic: h.topic, Value: raw})
	eventually(t, "the unsuppress on the intake topic dead-lettered", func() bool { return counter(t, h, "dead", h.topic) == 1 })
	m, ok := h.decide("erased@example.org", receipt)
	require.True(t, ok, "the erasure holds")
	require.Equal(t, suppression.ReasonErasure, m.Reason)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dead := testkafka.ReadAll(ctx, t, h.brokers, h.dlq, 1, 1)
	require.Len(t, dead, 1)
	var why string
	for _, hd := range dead[0].Headers {
		if hd.Key == HeaderError {
			why = string(hd.Value)
		}
	}
	require.Contains(t, why, "accepted only from the admin topic")

	h.publishRaw(kafka.Message{Topic: h.admin, Value: raw})
	eventually(t, "the unsuppress from the admin topic applied", func() bool { return counter(t, h, "events", "unsuppress", outcomeApplied) == 1 })
	_, ok = h.decide("erased@example.org", receipt)
	require.False(t, ok, "lifted by the admin topic's unsuppress")
}
