package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/kafkaconn"
	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
	"github.com/suppressd/suppressd/schemas"
	"github.com/suppressd/suppressd/suppression"
)

// TestLedgerIsTheLogOfRecord runs `serve --role consumer` (ingest and
// apply) on the real Kafka and Redis and publishes events with known
// addresses and phone numbers. Then: the ledger topic, Redis and the logs
// hold none of their raw, lowercased, E.164 or digits-only forms; the
// intake topics are deleted (their retention has passed); and still
// `suppressd subjects` shows a person's history, in time order, under any
// of their identifiers, and `suppressd rebuild` restores every suppression.
func TestLedgerIsTheLogOfRecord(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	brokers, topic := servingEnv(ctx, t, testenv.RedisAddr(t))
	t.Setenv("SUPPRESSD_PHONE_REGION", "US")
	_, logs, stop := serveStoppable(t, "consumer")

	base := time.Now().Add(-time.Hour)
	mk := func(id string, typ suppression.EventType, at time.Duration, ids ...suppression.Identifier) kafka.Message {
		e := suppression.Event{ID: id, Source: "/test", Type: typ, OccurredAt: base.Add(at), Identifiers: ids,
			Scopes: []suppression.Scope{"email"}, Origin: suppression.OriginRecipient}
		require.NoError(t, e.Normalize(time.Time{}))
		raw, err := schemas.Encode(e)
		require.NoError(t, err)
		return kafka.Message{Key: []byte(id), Value: raw}
	}
	email := suppression.Identifier{Type: suppression.IDEmail, Value: "History.Person+promo@Gmail.com"}
	phone := suppression.Identifier{Type: suppression.IDPhone, Value: "(650) 253-0000"}
	msgs := []kafka.Message{
		mk("h-2", suppression.EventResubscribe, 2*time.Minute, suppression.Identifier{Type: suppression.IDEmail, Value: "historyperson@gmail.com"}),
		mk("h-1", suppression.EventUnsubscribe, time.Minute, email),
		mk("other", suppression.EventUnsubscribe, time.Minute, suppression.Identifier{Type: suppression.IDEmail, Value: "someone.else@example.org"}),
		mk("h-3", suppression.EventHardBounce, 3*time.Minute, suppression.Identifier{Type: suppression.IDUserID, Value: "u-9"}, phone),
	}
	var raws []string
	for i := range 30 {
		e := fmt.Sprintf("Ledger.Person%d+tag@Example.org", i)
		p := fmt.Sprintf("+1 415 555 %04d", 1000+i)
		raws = append(raws, e, strings.ToLower(e), fmt.Sprintf("+1415555%04d", 1000+i), fmt.Sprintf("1415555%04d", 1000+i))
		msgs = append(msgs, mk(fmt.Sprintf("bulk-%d", i), suppression.EventUnsubscribe, 4*time.Minute,
			suppression.Identifier{Type: suppression.IDEmail, Value: e}, suppression.Identifier{Type: suppression.IDPhone, Value: p}))
	}
	raws = append(raws, "History.Person", "history.person", "+16502530000", "16502530000", "someone.else")
	w := testkafka.Writer(brokers, topic)
	defer w.Close()
	require.NoError(t, w.WriteMessages(ctx, msgs...))

	s, err := load("")
	require.NoError(t, err)
	d, err := openStore(s)
	require.NoError(t, err)
	defer d.close()
	everyone := func() []suppression.StorageKey {
		var ids []suppression.Identifier
		for i := range 30 {
			ids = append(ids, suppression.Identifier{Type: suppression.IDEmail, Value: fmt.Sprintf("ledger.person%d+tag@example.org", i)})
		}
		mks, err := s.normalizer.Expand(ids...)
		require.NoError(t, err)
		return s.keyer.StorageKeys(nil, mks)
	}()
	suppressedNow := func() int {
		recs, err := d.store.Get(ctx, suppression.DefaultNamespace, everyone)
		if err != nil {
			return -1
		}
		n := 0
		for _, r := range recs {
			if r["email"].Suppressed() {
				n++
			}
		}
		return n
	}
	require.Eventually(t, func() bool { return suppressedNow() == len(everyone) }, 60*time.Second, 50*time.Millisecond, "every event applied\n%s", logs.String())
	stop()

	// Nothing raw in the ledger, in Redis or in the logs.
	var ledgerBytes bytes.Buffer
	ranges, err := s.Kafka.Ranges(ctx, []string{s.Topics.Ledger})
	require.NoError(t, err)
	for _, r := range ranges {
		require.NoError(t, s.Kafka.ReadRange(ctx, r, func(m kafka.Message) error {
			ledgerBytes.Write(m.Key)
			ledgerBytes.Write(m.Value)
			return nil
		}))
	}
	require.Greater(t, ledgerBytes.Len(), 1000)
	redisDump := dumpPrefix(ctx, t, s.Store.Prefix)
	for _, raw := range raws {
		require.NotContains(t, ledgerBytes.String(), raw, "the ledger holds a raw identifier")
		require.NotContains(t, strings.ToLower(ledgerBytes.String()), strings.ToLower(raw))
		require.NotContains(t, redisDump, raw, "Redis holds a raw identifier")
		require.NotContains(t, logs.String(), raw, "a log line holds a raw identifier")
	}

	// The intake topics' retention has passed: they are gone.
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: &kafka.Transport{}}
	resp, err := client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: s.Topics.All()})
	require.NoError(t, err)
	for tp, err := range resp.Errors {
		require.NoError(t, err, tp)
	}
	require.Eventually(t, func() bool {
		_, err := kafkaconn.Config{Brokers: brokers}.Ranges(ctx, []string{topic})
		return err != nil
	}, 30*time.Second, 100*time.Millisecond, "the intake topic is deleted")

	var out, errb bytes.Buffer
	code := run(ctx, []string{"subjects", "--email", "History.Person+promo@gmail.com", "--phone", "+16502530000"}, stdio{out: &out, err: &errb})
	require.Equal(t, 0, code, errb.String())
	o := out.String()
	require.Contains(t, o, ": 3\n", o)
	i1, i2, i3 := strings.Index(o, "id=h-1"), strings.Index(o, "id=h-2"), strings.Index(o, "id=h-3")
	require.True(t, i1 > 0 && i1 < i2 && i2 < i3, "in time order, the gmail forms and the phone all matched:\n%s", o)
	require.NotContains(t, o, "id=other")
	require.NotContains(t, strings.ToLower(o), "history.person", "no raw identifier in the output")
	require.NotContains(t, o, "6502530000")
	require.Contains(t, o, "state held now:")

	// --json: the same, as one object a script can read.
	out.Reset()
	code = run(ctx, []string{"subjects", "--json", "--email", "History.Person+promo@gmail.com", "--phone", "+16502530000"}, stdio{out: &out, err: &errb})
	require.Equal(t, 0, code, errb.String())
	var doc struct {
		Namespace string   `json:"namespace"`
		Keys      []string `json:"keys"`
		Events    []struct {
			At, Type, Origin, Source, ID, Reason, Topic string
			Scopes, Keys                                []string
		} `json:"events"`
		State []json.RawMessage `json:"state"`
	}
	require.NoError(t, json.Unmarshal(out.Bytes(), &doc), out.String())
	require.Equal(t, "default", doc.Namespace)
	require.Len(t, doc.Events, 3)
	for i, id := range []string{"h-1", "h-2", "h-3"} {
		require.Equal(t, id, doc.Events[i].ID, "in time order")
		require.Equal(t, s.Topics.Ledger, doc.Events[i].Topic, "read from the ledger")
		require.NotEmpty(t, doc.Events[i].Keys)
	}
	require.Equal(t, "hard_bounce", doc.Events[2].Type)
	require.NotEmpty(t, doc.State)

	// A rebuild from the ledger alone restores every suppression.
	out.Reset()
	code = run(ctx, []string{"rebuild", "--grace", "0s", "--drop-old"}, stdio{out: &out, err: &errb})
	require.Equal(t, 0, code, "%s\n%s", out.String(), errb.String())
	require.Contains(t, out.String(), "generation g2 is active")
	require.Eventually(t, func() bool { return suppressedNow() == len(everyone) }, 10*time.Second, 50*time.Millisecond,
		"every suppression restored from the ledger")
}

// dumpPrefix returns every key and hash value under a prefix on the test
// command's standalone Redis.
func dumpPrefix(ctx context.Context, t *testing.T, prefix string) string {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	defer rdb.Close()
	keys, err := rdb.Keys(ctx, prefix+":*").Result()
	require.NoError(t, err)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		if rdb.Type(ctx, k).Val() == "hash" {
			for f, v := range rdb.HGetAll(ctx, k).Val() {
				b.WriteString(f)
				b.WriteString(v)
			}
		}
	}
	require.NotEmpty(t, keys)
	return b.String()
}
