package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
	"github.com/suppressd/suppressd/schemas"
	"github.com/suppressd/suppressd/suppression"
)

// TestSubjectsHistory reads a person's history off the real topics: every
// event that names one of their match keys, in time order, under any of
// their identifiers, and nobody else's.
func TestSubjectsHistory(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topic := testkafka.Unique("hist")
	testkafka.CreateTopic(ctx, t, brokers[0], topic, 2)
	for k, v := range map[string]string{
		"SUPPRESSD_KAFKA_BROKERS":      strings.Join(brokers, ","),
		"SUPPRESSD_REDIS_ADDRS":        testenv.RedisAddr(t),
		"SUPPRESSD_TOPIC_UNSUBSCRIBES": topic, "SUPPRESSD_TOPIC_CONSENT": "", "SUPPRESSD_TOPIC_ERASURE": "",
		"SUPPRESSD_STORE_PREFIX": strings.ReplaceAll(testkafka.Unique("h"), "-", ""),
		"SUPPRESSD_PHONE_REGION": "US",
	} {
		t.Setenv(k, v)
	}
	base := time.Now().Add(-time.Hour)
	mk := func(id string, typ suppression.EventType, at time.Duration, ids ...suppression.Identifier) kafka.Message {
		e := suppression.Event{ID: id, Source: "/test", Type: typ, OccurredAt: base.Add(at), Identifiers: ids,
			Scopes: []suppression.Scope{"email"}, Origin: suppression.OriginRecipient}
		require.NoError(t, e.Normalize(time.Time{}))
		raw, err := schemas.Encode(e)
		require.NoError(t, err)
		return kafka.Message{Key: []byte(id), Value: raw}
	}
	email := suppression.Identifier{Type: suppression.IDEmail, Value: "history.person+promo@gmail.com"}
	phone := suppression.Identifier{Type: suppression.IDPhone, Value: "(650) 253-0000"}
	w := testkafka.Writer(brokers, topic)
	defer w.Close()
	require.NoError(t, w.WriteMessages(ctx,
		mk("h-2", suppression.EventResubscribe, 2*time.Minute, suppression.Identifier{Type: suppression.IDEmail, Value: "historyperson@gmail.com"}),
		mk("h-1", suppression.EventUnsubscribe, time.Minute, email),
		mk("other", suppression.EventUnsubscribe, time.Minute, suppression.Identifier{Type: suppression.IDEmail, Value: "someone.else@example.org"}),
		mk("h-3", suppression.EventHardBounce, 3*time.Minute, suppression.Identifier{Type: suppression.IDUserID, Value: "u-9"}, phone),
	))

	st, err := load("")
	require.NoError(t, err)
	d, err := openStore(st)
	require.NoError(t, err)
	defer d.close()
	buildStore(t, d)

	var out, errb bytes.Buffer
	code := run(ctx, []string{"subjects", "--email", "History.Person+promo@gmail.com", "--phone", "+16502530000"}, stdio{out: &out, err: &errb})
	require.Equal(t, 0, code, errb.String())
	o := out.String()
	require.Contains(t, o, ": 3\n", o)
	i1, i2, i3 := strings.Index(o, "id=h-1"), strings.Index(o, "id=h-2"), strings.Index(o, "id=h-3")
	require.True(t, i1 > 0 && i1 < i2 && i2 < i3, "in time order, the gmail forms and the phone all matched:\n%s", o)
	require.NotContains(t, o, "id=other")
	require.NotContains(t, o, "history.person", "no raw identifier in the output")
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
			Partition                                   int
			Offset                                      int64
		} `json:"events"`
		State []struct {
			Key    string `json:"key"`
			Scopes []struct {
				Scope      string            `json:"scope"`
				Suppressed bool              `json:"suppressed"`
				Registers  []json.RawMessage `json:"registers"`
			} `json:"scopes"`
		} `json:"state"`
	}
	require.NoError(t, json.Unmarshal(out.Bytes(), &doc), out.String())
	require.Equal(t, "default", doc.Namespace)
	require.NotEmpty(t, doc.Keys)
	require.Len(t, doc.Events, 3)
	for i, id := range []string{"h-1", "h-2", "h-3"} {
		require.Equal(t, id, doc.Events[i].ID, "in time order")
		require.Equal(t, topic, doc.Events[i].Topic)
		require.NotEmpty(t, doc.Events[i].Keys)
	}
	require.Equal(t, "hard_bounce", doc.Events[2].Type)
	require.Equal(t, []string{"email"}, doc.Events[0].Scopes)
	require.NotNil(t, doc.State)
	require.NotContains(t, out.String(), "history.person", "no raw identifier in the output")
	require.NotContains(t, out.String(), "6502530000")
}
