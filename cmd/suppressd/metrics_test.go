package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
)

// sample is one series of a /metrics page.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

var (
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$`)
	labelPair  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

// parseMetrics reads the samples of a Prometheus text page.
func parseMetrics(t *testing.T, page string) []sample {
	t.Helper()
	var out []sample
	for _, line := range strings.Split(page, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		require.NotNil(t, m, "not a sample line: %q", line)
		v, err := strconv.ParseFloat(m[3], 64)
		require.NoError(t, err, line)
		s := sample{name: m[1], labels: map[string]string{}, value: v}
		for _, l := range labelPair.FindAllStringSubmatch(m[2], -1) {
			s.labels[l[1]] = l[2]
		}
		out = append(out, s)
	}
	return out
}

// series returns the samples of a metric whose labels include match, keyed
// by the value of the label key.
func series(samples []sample, name, key string, match map[string]string) map[string]float64 {
	out := map[string]float64{}
next:
	for _, s := range samples {
		if s.name != name {
			continue
		}
		for k, v := range match {
			if s.labels[k] != v {
				continue next
			}
		}
		out[s.labels[key]] = s.value
	}
	return out
}

// series2 returns the samples of a metric by the values of two labels.
func series2(samples []sample, name, a, b string) map[[2]string]float64 {
	out := map[[2]string]float64{}
	for _, s := range samples {
		if s.name == name {
			out[[2]string{s.labels[a], s.labels[b]}] = s.value
		}
	}
	return out
}

// joined keys a series2 map by "a/b", for readable failures.
func joined(m map[[2]string]float64) map[string]float64 {
	out := make(map[string]float64, len(m))
	for k, v := range m {
		out[k[0]+"/"+k[1]] = v
	}
	return out
}

// TestServeLagOfBothStages runs `serve --role consumer` (both stages) on a
// store that is not built, with the automatic rebuild off: the ingest stage
// moves every intake event onto the ledger, the apply stage is stuck
// retrying. /metrics must say exactly that, per stage and partition, from
// the groups' commits: nothing left on any intake partition, and every
// ledger record still waiting. Once the store is built the apply stage
// catches up and its lag drops to 0.
func TestServeLagOfBothStages(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	brokers, topic := servingEnv(ctx, t, testenv.RedisAddr(t))
	t.Setenv("SUPPRESSD_AUTO_REBUILD", "false")
	const n = 20
	var emails []string
	for i := range n {
		emails = append(emails, fmt.Sprintf("lag%d@example.org", i))
	}
	w := testkafka.Writer(brokers, topic)
	defer w.Close()
	require.NoError(t, w.WriteMessages(ctx, unsubscribes(t, emails...)...))

	p := startServeUntil(t, nil, "consumer", "/healthz")
	// The intake topics (unsubscribes, consent, erasure, admin; two
	// partitions each) for ingest, the ledger's two for apply.
	intake := map[string]float64{}
	for _, tp := range []string{topic, topic + "-consent", topic + "-erasure", topic + "-admin"} {
		intake[tp+"/0"], intake[tp+"/1"] = 0, 0
	}
	lagOf := func(stage string) map[string]float64 {
		out := map[string]float64{}
		for _, s := range parseMetrics(t, p.metrics(t)) {
			if s.name == "suppressd_consumer_lag" && s.labels["stage"] == stage {
				out[s.labels["topic"]+"/"+s.labels["partition"]] = s.value
			}
		}
		return out
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for !cond() {
			require.True(t, time.Now().Before(deadline), "timed out waiting for %s; /metrics:\n%s\nlog:\n%s", what, p.metrics(t), p.stderr.String())
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitFor("ingest caught up, apply stuck with every ledger record", func() bool {
		ledger := lagOf("apply")
		// Every event's record waits; the genesis record too, unless the
		// apply stage read it in a batch of its own before the events
		// came: it needs no store write, so that batch was committed.
		waiting := ledger[topic+"-ledger/0"] + ledger[topic+"-ledger/1"]
		return fmt.Sprint(lagOf("ingest")) == fmt.Sprint(intake) && len(ledger) == 2 && (waiting == n || waiting == n+1)
	})
	require.Equal(t, map[string]float64{"": 0}, series(parseMetrics(t, p.metrics(t)), "suppressd_store_ready", "", nil))

	// Build the store: apply catches up.
	s, err := load("consumer")
	require.NoError(t, err)
	d, err := openStore(s)
	require.NoError(t, err)
	defer d.close()
	buildStore(t, d)
	waitFor("apply caught up", func() bool {
		return fmt.Sprint(lagOf("apply")) == fmt.Sprint(map[string]float64{topic + "-ledger/0": 0, topic + "-ledger/1": 0})
	})
	require.NoError(t, p.cmd.Process.Signal(os.Interrupt))
	require.NoError(t, p.cmd.Wait(), p.stderr.String())
}
