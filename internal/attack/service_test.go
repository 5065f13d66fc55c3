package attack

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
	"github.com/suppressd/suppressd/suppression"
	"github.com/suppressd/suppressd/unsubscribe"
)

// The keys of the service under attack, one per scope.
const (
	checkKey   = "sdk_attack_check"
	filterKey  = "sdk_attack_filter"
	publishKey = "sdk_attack_publish"
	adminKey   = "sdk_attack_admin"
)

// Limits the service is started with: small enough to reach in a test.
const (
	maxConns    = 200
	bodyTimeout = 2 * time.Second
	tokenRate   = 10
	clientRate  = 100
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds cmd/suppressd once per test run, without -race.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "suppressd-attack-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "suppressd")
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/suppressd")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return binPath
}

// service is a running `suppressd serve --role api,consumer`.
type service struct {
	t       *testing.T
	url     string
	addr    string
	cmd     *exec.Cmd
	logs    *testenv.Buffer
	brokers []string
	topics  map[string]string // role -> name: unsubscribes, consent, erasure, dlq
	ring    *unsubscribe.Keyring
}

func hashHex(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// start runs the binary against the test command's Redis and Kafka, on
// topics, a store prefix and a consumer group of its own, and waits until
// it is ready.
func start(t *testing.T) *service {
	t.Helper()
	brokers := testenv.KafkaBrokers(t)
	redisAddr := testenv.RedisAddr(t)
	built := time.Now()
	bin := binary(t)
	t.Logf("binary built in %s", time.Since(built).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	base := testkafka.Unique("attack")
	topics := map[string]string{"unsubscribes": base + "-unsub", "consent": base + "-consent", "erasure": base + "-erasure",
		"admin": base + "-admin", "ledger": base + "-ledger", "dlq": base + "-dlq"}
	for _, name := range topics {
		testkafka.CreateTopic(ctx, t, brokers[0], name, 1)
	}
	secret := sha256.Sum256([]byte("attack link key " + base))
	addr := freeAddr(t)
	s := &service{t: t, url: "http://" + addr, addr: addr, logs: &testenv.Buffer{}, brokers: brokers, topics: topics}
	var err error
	s.ring, err = unsubscribe.NewKeyring("k1", []unsubscribe.Key{{ID: "k1", Secret: secret[:]}})
	require.NoError(t, err)
	env := map[string]string{
		"SUPPRESSD_ROLE":     "api,consumer",
		"SUPPRESSD_API_ADDR": addr,
		"SUPPRESSD_API_KEYS": strings.Join([]string{
			"checker:check:" + hashHex(checkKey), "exporter:filter:" + hashHex(filterKey),
			"publisher:publish:" + hashHex(publishKey), "operator:admin+check:" + hashHex(adminKey),
		}, ","),
		"SUPPRESSD_API_MAX_CONNS":            strconv.Itoa(maxConns),
		"SUPPRESSD_API_BODY_TIMEOUT":         bodyTimeout.String(),
		"SUPPRESSD_LINK_KEYS":                "k1:" + base64.StdEncoding.EncodeToString(secret[:]),
		"SUPPRESSD_LINK_BASE_URL":            s.url,
		"SUPPRESSD_LINK_RATE":                strconv.Itoa(tokenRate),
		"SUPPRESSD_LINK_CLIENT_RATE":         strconv.Itoa(clientRate),
		"SUPPRESSD_LINK_CLIENT_IP_HEADER":    "X-Forwarded-For",
		"SUPPRESSD_KAFKA_BROKERS":            strings.Join(brokers, ","),
		"SUPPRESSD_REDIS_ADDRS":              redisAddr,
		"SUPPRESSD_TOPIC_UNSUBSCRIBES":       topics["unsubscribes"],
		"SUPPRESSD_TOPIC_CONSENT":            topics["consent"],
		"SUPPRESSD_TOPIC_ERASURE":            topics["erasure"],
		"SUPPRESSD_TOPIC_ADMIN":              topics["admin"],
		"SUPPRESSD_TOPIC_LEDGER":             topics["ledger"],
		"SUPPRESSD_TOPIC_DEAD_LETTER":        topics["dlq"],
		"SUPPRESSD_CONSUMER_GROUP":           base,
		"SUPPRESSD_STORE_PREFIX":             strings.ReplaceAll(base, "-", ""),
		"SUPPRESSD_LOG_FORMAT":               "json",
		"SUPPRESSD_CONSUMER_BATCH_WAIT":      "5ms",
		"SUPPRESSD_CONSUMER_BACKOFF_MIN":     "20ms",
		"SUPPRESSD_CONSUMER_SESSION_TIMEOUT": "6s",
	}
	s.cmd = exec.Command(bin, "serve")
	s.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		s.cmd.Env = append(s.cmd.Env, k+"="+v)
	}
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	require.NoError(t, s.cmd.Start())
	t.Cleanup(s.stop)
	deadline := time.Now().Add(45 * time.Second)
	for {
		resp, err := http.Get(s.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("suppressd not ready after 45s; it said:\n%s", s.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

func (s *service) stop() {
	if s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	if s.t.Failed() {
		s.t.Logf("suppressd said:\n%s", tail(s.logs.String(), 60))
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// memory returns the process's resident set now and its peak, in bytes.
func (s *service) memory(t testing.TB) (rss, hwm int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	require.NoError(t, err, "the process is gone")
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		require.NoError(t, err)
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	require.Positive(t, rss)
	return rss, hwm
}

// alive fails the test if the process exited (a crash, an OOM kill).
func (s *service) alive(t testing.TB) {
	t.Helper()
	require.NoError(t, s.cmd.Process.Signal(syscall.Signal(0)), "suppressd died:\n%s", tail(s.logs.String(), 40))
}

// request is one HTTP request of the suite.
type request struct {
	method, path, key string
	header            http.Header
	body              []byte
	bodyReader        io.Reader // instead of body
}

// response is what came back.
type response struct {
	status int
	header http.Header
	body   string
}

// do sends a request and reads the answer while the body is still being
// written: a server that refuses a large body answers and closes before
// taking all of it, and a client that only reads once it has written
// would see the reset instead of the answer.
func (s *service) do(t testing.TB, r request) response {
	t.Helper()
	var body io.Reader = bytes.NewReader(r.body)
	if r.bodyReader != nil {
		body = r.bodyReader
	}
	req, err := http.NewRequest(r.method, s.url+r.path, body)
	require.NoError(t, err)
	if r.bodyReader != nil {
		req.ContentLength = -1 // chunked
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	if r.key != "" {
		req.Header.Set("Authorization", "Bearer "+r.key)
	}
	c, err := net.Dial("tcp", s.addr)
	require.NoError(t, err, "%s %s", r.method, r.path)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	go func() { _ = req.Write(c) }()
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	require.NoError(t, err, "%s %s: no answer", r.method, r.path)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// link mints an unsubscribe link for an address with the service's key.
func (s *service) link(t testing.TB, address string, scopes ...suppression.Scope) string {
	t.Helper()
	now := time.Now()
	token, err := s.ring.Mint(unsubscribe.Claims{
		Identifier: suppression.Identifier{Type: suppression.IDEmail, Value: address},
		Scopes:     scopes, IssuedAt: now, ExpiresAt: now.Add(30 * 24 * time.Hour),
	}, now)
	require.NoError(t, err)
	return "/u/" + token
}

// topic reads every message of one of the service's topics (one
// partition), up to its end offset as the broker says it now.
func (s *service) topic(t testing.TB, role string) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := kafka.DialLeader(ctx, "tcp", s.brokers[0], s.topics[role], 0)
	require.NoError(t, err)
	last, err := conn.ReadLastOffset()
	_ = conn.Close()
	require.NoError(t, err)
	if last == 0 {
		return nil
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: s.brokers, Topic: s.topics[role], Partition: 0, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	var out []kafka.Message
	for {
		m, err := r.ReadMessage(ctx)
		require.NoError(t, err)
		out = append(out, m)
		if m.Offset+1 >= last {
			return out
		}
	}
}

// event is a valid CloudEvent.
func event(id, typ, address string, scopes ...string) []byte {
	ev := map[string]any{
		"specversion": "1.0", "id": id, "source": "/attack-suite", "type": typ,
		"time": time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano), "datacontenttype": "application/json",
		"data": map[string]any{
			"identifiers": []map[string]string{{"type": "email", "value": address}},
			"scopes":      scopes, "origin": "recipient",
		},
	}
	b, _ := json.Marshal(ev)
	return b
}
