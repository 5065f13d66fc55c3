// Package testenv tells tests where the real servers started by the README's
// test command (scripts/test.sh) are listening.
//
// Outside that command the variables are unset and integration tests skip;
// under it SUPPRESSD_TEST_REQUIRE=1 is set, and a missing server fails the test
// instead, so a broken set-up can never pass as a run of skipped tests.
package testenv

import (
	"os"
	"strings"
	"testing"
)

// Variable names exported by scripts/test.sh.
const (
	EnvRedis        = "SUPPRESSD_TEST_REDIS_ADDR"    // host:port of a standalone redis-server
	EnvRedisCluster = "SUPPRESSD_TEST_REDIS_CLUSTER" // comma-separated host:port of the cluster masters
	EnvKafka        = "SUPPRESSD_TEST_KAFKA_BROKERS" // comma-separated host:port of Kafka brokers
	EnvRequire      = "SUPPRESSD_TEST_REQUIRE"       // "1": a missing server is a failure, not a skip
	EnvRedisServer  = "SUPPRESSD_TEST_REDIS_SERVER"  // path of the redis-server binary, for tests that start their own
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
