// Package testenv tells tests where the real servers started by the README's
// test command (scripts/test.sh) are listening.
//
// Outside that command the variables are unset and integration tests skip;
// under it SUPPRESSD_TEST_REQUIRE=1 is set, and a missing server fails the test
// instead, so a broken set-up can never pass as a run of skipped tests.
package testenv

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Variable names exported by scripts/test.sh.
const (
	EnvRedis        = "SUPPRESSD_TEST_REDIS_ADDR"    // host:port of a standalone redis-server
	EnvRedisCluster = "SUPPRESSD_TEST_REDIS_CLUSTER" // comma-separated host:port of the cluster masters
	EnvKafka        = "SUPPRESSD_TEST_KAFKA_BROKERS" // comma-separated host:port of Kafka brokers
	EnvRequire      = "SUPPRESSD_TEST_REQUIRE"       // "1": a missing server is a failure, not a skip
	EnvRedisServer  = "SUPPRESSD_TEST_REDIS_SERVER"  // path of the redis-server binary, for tests that start their own
	EnvKafkaHome    = "SUPPRESSD_TEST_KAFKA_HOME"    // directory whose lib/ holds the Kafka jars, for tests that start a broker of their own

	// The broker's SASL_SSL listener (SCRAM-SHA-512 over TLS); the same
	// broker as EnvKafka, whose PLAINTEXT listener stays as it is.
	EnvKafkaSASL         = "SUPPRESSD_TEST_KAFKA_SASL_BROKERS"  // comma-separated host:port of the SASL_SSL listener
	EnvKafkaSASLUsername = "SUPPRESSD_TEST_KAFKA_SASL_USERNAME" // SCRAM user created at storage-format time
	EnvKafkaSASLPassword = "SUPPRESSD_TEST_KAFKA_SASL_PASSWORD" // its password, random per run
	EnvKafkaTLSCAFile    = "SUPPRESSD_TEST_KAFKA_TLS_CA_FILE"   // PEM of the CA that signed the broker's certificate

	// A redis-server that speaks only TLS and knows one ACL user, limited to
	// the keys sd:* and the commands of the suppression store; the default
	// user is off.
	EnvRedisTLS         = "SUPPRESSD_TEST_REDIS_TLS_ADDR"     // host:port (TLS only)
	EnvRedisTLSCAFile   = "SUPPRESSD_TEST_REDIS_TLS_CA_FILE"  // PEM of the CA that signed its certificate
	EnvRedisTLSUsername = "SUPPRESSD_TEST_REDIS_TLS_USERNAME" // the ACL user
	EnvRedisTLSPassword = "SUPPRESSD_TEST_REDIS_TLS_PASSWORD" // its password, random per run

	EnvSchemathesis = "SUPPRESSD_TEST_SCHEMATHESIS" // path of schemathesis's `st` executable
)

func lookup(t testing.TB, name, what string) string {
	t.Helper()
	v := strings.TrimSpace(os.Getenv(name))
	if v != "" {
		return v
	}
	if os.Getenv(EnvRequire) == "1" {
		t.Fatalf("%s is not set: the test command must start %s", name, what)
	}
	t.Skipf("%s not set: run the README's test command to test against real %s", name, what)
	return ""
}

// RedisAddr returns the standalone Redis address, or skips/fails the test.
func RedisAddr(t testing.TB) string {
	t.Helper()
	return lookup(t, EnvRedis, "Redis")
}

// RedisClusterAddrs returns the Redis Cluster seed addresses, or skips/fails the test.
func RedisClusterAddrs(t testing.TB) []string {
	t.Helper()
	return strings.Split(lookup(t, EnvRedisCluster, "Redis Cluster"), ",")
}

// KafkaBrokers returns the Kafka bootstrap addresses, or skips/fails the test.
func KafkaBrokers(t testing.TB) []string {
	t.Helper()
	return strings.Split(lookup(t, EnvKafka, "Kafka"), ",")
}

// RedisServerPath returns the redis-server binary, or skips/fails the test.
func RedisServerPath(t testing.TB) string {
	t.Helper()
	return lookup(t, EnvRedisServer, "redis-server")
}

// KafkaHome returns the directory of the Kafka jars the test command
// resolved (its lib/ holds them), or skips/fails the test.
func KafkaHome(t testing.TB) string {
	t.Helper()
	return lookup(t, EnvKafkaHome, "the Kafka jars")
}

// KafkaSASLListener is the broker's SASL_SSL listener: what a
// kafkaconn.Config needs (SASLMechanism, SASLUsername, SASLPassword, TLS on,
// TLSCAFile).
type KafkaSASLListener struct {
	Brokers   []string
	Mechanism string // "scram-sha-512", as SUPPRESSD_KAFKA_SASL_MECHANISM spells it
	Username  string
	Password  string
	CAFile    string
}

// KafkaSASL returns the broker's SASL_SSL listener, or skips/fails the test.
func KafkaSASL(t testing.TB) KafkaSASLListener {
	t.Helper()
	const what = "Kafka's SASL_SSL listener"
	return KafkaSASLListener{
		Brokers:   strings.Split(lookup(t, EnvKafkaSASL, what), ","),
		Mechanism: "scram-sha-512",
		Username:  lookup(t, EnvKafkaSASLUsername, what),
		Password:  lookup(t, EnvKafkaSASLPassword, what),
		CAFile:    lookup(t, EnvKafkaTLSCAFile, what),
	}
}

// SecureRedis is the TLS-only redis-server and its ACL user: what a
// redisconn.Config needs (Username, Password, TLS on, TLSCAFile).
type SecureRedis struct {
	Addr     string
	Username string
	Password string
	CAFile   string
}

// RedisTLS returns the TLS + ACL redis-server, or skips/fails the test. Its
// user may touch only keys that start with "sd:".
func RedisTLS(t testing.TB) SecureRedis {
	t.Helper()
	const what = "the TLS + ACL redis-server"
	return SecureRedis{
		Addr:     lookup(t, EnvRedisTLS, what),
		Username: lookup(t, EnvRedisTLSUsername, what),
		Password: lookup(t, EnvRedisTLSPassword, what),
		CAFile:   lookup(t, EnvRedisTLSCAFile, what),
	}
}

// UntrustedCA writes a freshly made CA certificate, which signed nothing
// the test command's servers present, and returns its file: a client that
// trusts only it must refuse their certificates.
func UntrustedCA(t testing.TB) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "not the test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// Schemathesis returns the path of schemathesis's `st` executable, or
// skips/fails the test.
func Schemathesis(t testing.TB) string {
	t.Helper()
	return lookup(t, EnvSchemathesis, "schemathesis")
}

// RedisClients returns a client for each real Redis topology of the test
// command: "standalone" and "cluster". They are closed when the test ends.
func RedisClients(t testing.TB) map[string]redis.UniversalClient {
	t.Helper()
	out := map[string]redis.UniversalClient{
		"standalone": redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{RedisAddr(t)}}),
		"cluster":    redis.NewClusterClient(&redis.ClusterOptions{Addrs: RedisClusterAddrs(t)}),
	}
	for _, c := range out {
		t.Cleanup(func() { _ = c.Close() })
	}
	return out
}

// RedisBenchmark runs redis-benchmark against addr with -P 64 over n random
// keys (__rand_int__ in args) and returns its requests per second: the
// ceiling the benchmarks compare themselves with.
func RedisBenchmark(t testing.TB, addr string, n int, args ...string) float64 {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	cmd := append([]string{"-h", host, "-p", port, "-P", "64", "-n", strconv.Itoa(n), "-r", strconv.Itoa(n), "-q"}, args...)
	out, err := exec.Command("redis-benchmark", cmd...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-benchmark: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`([0-9.]+) requests per second`).FindAllSubmatch(out, -1)
	if m == nil {
		t.Fatalf("redis-benchmark said:\n%s", out)
	}
	rps, _ := strconv.ParseFloat(string(m[len(m)-1][1]), 64)
	return rps
}

// Buffer is a bytes.Buffer safe for the concurrent writes of a logger or a
// subprocess and the test's reads.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
