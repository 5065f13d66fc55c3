package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/schemas"
	"github.com/suppressd/suppressd/suppression"
)

// TestDevEndToEnd starts `suppressd dev` as a subprocess, publishes an
// unsubscribe with a plain Kafka client to its embedded broker, and sees the
// contact suppressed through its API.
func TestDevEndToEnd(t *testing.T) {
	bin, err := buildBinary()
	require.NoError(t, err)
	apiAddr, kafkaAddr := freePort(t), freePort(t)
	var stdout, stderr testenv.Buffer
	cmd := exec.Command(bin, "dev", "--api-addr", apiAddr, "--kafka-addr", kafkaAddr)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	require.Eventually(t, func() bool { return strings.Contains(stdout.String(), "suppressd dev:") }, 30*time.Second, 20*time.Millisecond, stderr.String())
	require.Contains(t, stdout.String(), "http://"+apiAddr)
	require.Contains(t, stdout.String(), kafkaAddr)

	checkBody := []byte(`{"identifiers":[{"type":"email","value":"dev.user@example.org"}],"channel":"email","purpose":"marketing"}`)
	allowed := func() (bool, int) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+apiAddr+"/v1/check", bytes.NewReader(checkBody))
		req.Header.Set("Authorization", "Bearer "+devAPIKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return true, 0
		}
		defer resp.Body.Close()
		var out struct{ Allowed bool }
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return out.Allowed, resp.StatusCode
	}
	ok, status := allowed()
	require.Equal(t, http.StatusOK, status)
	require.True(t, ok, "not suppressed before the event")

	e := suppression.Event{ID: "dev-test-1", Source: "/test", Type: suppression.EventUnsubscribe, OccurredAt: time.Now(),
		Identifiers: []suppression.Identifier{{Type: suppression.IDEmail, Value: "dev.user@example.org"}},
		Scopes:      []suppression.Scope{"email"}, Origin: suppression.OriginRecipient}
	require.NoError(t, e.Normalize(time.Time{}))
	raw, err := schemas.Encode(e)
	require.NoError(t, err)
	w := &kafka.Writer{Addr: kafka.TCP(kafkaAddr), Topic: "suppressd.unsubscribes", RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond, Transport: &kafka.Transport{}}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, w.WriteMessages(ctx, kafka.Message{Key: []byte("k"), Value: raw}))

	require.Eventually(t, func() bool { ok, status := allowed(); return status == http.StatusOK && !ok },
		30*time.Second, 50*time.Millisecond, "the published unsubscribe shows up through the API\n%s", stderr.String())

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), "dev exits 0 on SIGTERM")
	require.NotContains(t, stderr.String(), "dev.user@example.org", "no address in the logs")
	_, err = net.DialTimeout("tcp", apiAddr, 200*time.Millisecond)
	require.Error(t, err, "the API is gone after exit")
}
