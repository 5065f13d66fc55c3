package testkafka

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testenv"
)

// Broker is a Kafka broker of a test's own: one KRaft node (broker and
// controller) with a PLAINTEXT listener on a free loopback port, run from
// the jars the test command resolved (testenv.KafkaHome) in t.TempDir().
// Tests that kill the broker use it, so the test command's shared broker
// never goes down under the other tests. It keeps its ports and data
// across Kill and Start: restarted, it is the same broker with the same
// topics, offsets and consumer groups, as after a crash.
//
// It is configured as the test command's broker (scripts/test.sh): one
// replica, a small heap, no initial rebalance delay.
type Broker struct {
	t         testing.TB
	home      string
	dir       string
	addr      string
	clusterID string
	java      []string // the JVM's command line, without the main class's arguments

	proc testenv.Proc
}

// brokerStartTimeout bounds a start, the JVM's included; on the 2-core
// development machine a start takes 4 to 8 s.
const brokerStartTimeout = 90 * time.Second

// StartBroker formats a new broker's storage, starts it and returns once
// it serves metadata and a group coordinator. It is killed when the test
// ends.
func StartBroker(t testing.TB) *Broker {
	t.Helper()
	home := testenv.KafkaHome(t)
	jars, _ := filepath.Glob(filepath.Join(home, "lib", "kafka_2.13-*.jar"))
	require.NotEmpty(t, jars, "no Kafka broker jar in %s/lib", home)
	java, err := exec.LookPath("java")
	require.NoError(t, err, "a broker of the test's own needs java")

	b := &Broker{t: t, home: home, dir: t.TempDir(), clusterID: newClusterID()}
	ports := freePorts(t, 2)
	b.addr = net.JoinHostPort("127.0.0.1", ports[0])
	props := []string{
		"process.roles=broker,controller",
		"node.id=1",
		"controller.quorum.voters=1@127.0.0.1:" + ports[1],
		"listeners=PLAINTEXT://" + b.addr + ",CONTROLLER://127.0.0.1:" + ports[1],
		"advertised.listeners=PLAINTEXT://" + b.addr,
		"controller.listener.names=CONTROLLER",
		"inter.broker.listener.name=PLAINTEXT",
		"listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
		"log.dirs=" + filepath.Join(b.dir, "data"),
		"num.partitions=1",
		"auto.create.topics.enable=false",
		"log.message.timestamp.type=LogAppendTime", // as the test command's broker
		"offsets.topic.replication.factor=1",
		"offsets.topic.num.partitions=1",
		"transaction.state.log.replication.factor=1",
		"transaction.state.log.min.isr=1",
		"share.coordinator.state.topic.replication.factor=1",
		"share.coordinator.state.topic.min.isr=1",
		"group.initial.rebalance.delay.ms=0",
		// A restarted KRaft broker may register again only once the
		// controller has expired its previous incarnation's session (9s
		// by default): a short one makes a restart take seconds less.
		"broker.heartbeat.interval.ms=500",
		"broker.session.timeout.ms=2000",
		"num.network.threads=1",
		"num.io.threads=2",
		"log.cleaner.dedupe.buffer.size=16777216",
	}
	conf := filepath.Join(b.dir, "server.properties")
	require.NoError(t, os.WriteFile(conf, []byte(strings.Join(props, "\n")+"\n"), 0o600))

	// Kafka 3.x logs through log4j 1, 4.x through log4j 2.
	logFile := filepath.Join(b.dir, "server.log")
	var logOpt string
	if v3, _ := filepath.Glob(filepath.Join(home, "lib", "kafka_2.13-3.*.jar")); len(v3) > 0 {
		l4j := filepath.Join(b.dir, "log4j.properties")
		require.NoError(t, os.WriteFile(l4j, []byte("log4j.rootLogger=INFO, file\n"+
			"log4j.appender.file=org.apache.log4j.FileAppender\nlog4j.appender.file.File="+logFile+"\n"+
			"log4j.appender.file.layout=org.apache.log4j.PatternLayout\nlog4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n\n"), 0o600))
		logOpt = "-Dlog4j.configuration=file:" + l4j
	} else {
		l4j := filepath.Join(b.dir, "log4j2.properties")
		require.NoError(t, os.WriteFile(l4j, []byte("status = warn\nappender.file.type = File\nappender.file.name = FILE\n"+
			"appender.file.fileName = "+logFile+"\nappender.file.layout.type = PatternLayout\n"+
			"appender.file.layout.pattern = [%d] %p %m (%c)%n\nrootLogger.level = INFO\nrootLogger.appenderRef.file.ref = FILE\n"), 0o600))
		logOpt = "-Dlog4j2.configurationFile=" + l4j
	}
	// A small heap, one GC thread and the client compiler: a test broker
	// carries a few hundred messages, and starts faster so (the JIT's
	// second tier costs CPU the other tests need).
	b.java = []string{java, "-Xms64m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true", "-Djava.net.preferIPv4Stack=true",
		"-Dkafka.logs.dir=" + b.dir, logOpt, "-cp", filepath.Join(home, "lib", "*")}

	format := exec.Command(b.java[0], append(b.java[1:], "kafka.tools.StorageTool", "format",
		"--cluster-id="+b.clusterID, "-c", conf)...)
	if out, err := format.CombinedOutput(); err != nil {
		t.Fatalf("kafka-storage format: %v\n%s", err, out)
	}
	t.Cleanup(b.kill)
	b.run(conf)
	b.waitReady(true)
	return b
}

// Addr is the broker's host:port (PLAINTEXT).
func (b *Broker) Addr() string { return b.addr }

// Kill sends SIGKILL, as a crash or an OOM kill would, and waits for the
// process to be gone.
func (b *Broker) Kill() {
	b.t.Helper()
	require.False(b.t, b.HasExited(), "the broker is not running")
	b.kill()
}

// Start runs the killed broker again, on the same ports and data, and
// returns once it serves metadata as a member of its own cluster: the
// moment a client can talk to it again.
func (b *Broker) Start() {
	b.t.Helper()
	require.True(b.t, b.HasExited(), "the broker is already running")
	b.run(filepath.Join(b.dir, "server.properties"))
	b.waitReady(false)
}

func (b *Broker) run(conf string) {
	t := b.t
	t.Helper()
	out, err := os.OpenFile(filepath.Join(b.dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	require.NoError(t, err)
	cmd := exec.Command(b.java[0], append(b.java[1:], "kafka.Kafka", conf)...)
	cmd.Stdout, cmd.Stderr = out, out
	dieWithParent(cmd)
	require.NoError(t, b.proc.Start(cmd))
	_ = out.Close()
}

// waitReady polls until the broker lists itself in a metadata answer under
// its own cluster id (another broker that took the port would not), and
// with coordinator also until it can coordinate a consumer group (which
// creates __consumer_offsets).
func (b *Broker) waitReady(coordinator bool) {
	t := b.t
	t.Helper()
	client := &kafka.Client{Addr: kafka.TCP(b.addr), Timeout: 2 * time.Second, Transport: &kafka.Transport{DialTimeout: time.Second}}
	deadline := time.Now().Add(brokerStartTimeout)
	var last error
	for {
		last = b.ready(client, coordinator)
		if last == nil {
			return
		}
		if b.HasExited() {
			t.Fatalf("the broker on %s exited during start-up: %v\n%s", b.addr, last, b.LogTail())
		}
		if time.Now().After(deadline) {
			t.Fatalf("the broker on %s is not ready after %s: %v\n%s", b.addr, brokerStartTimeout, last, b.LogTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (b *Broker) ready(client *kafka.Client, coordinator bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return err
	}
	if md.ClusterID != b.clusterID {
		return fmt.Errorf("%s is served by cluster %q, not ours (%q): a port race", b.addr, md.ClusterID, b.clusterID)
	}
	if len(md.Brokers) == 0 {
		return fmt.Errorf("no broker registered yet")
	}
	if !coordinator {
		return nil
	}
	resp, err := client.FindCoordinator(ctx, &kafka.FindCoordinatorRequest{Key: "ready", KeyType: kafka.CoordinatorKeyTypeConsumer})
	if err != nil {
		return err
	}
	return resp.Error
}

func (b *Broker) kill() { b.proc.Kill() }

// HasExited reports whether the broker's process is gone.
func (b *Broker) HasExited() bool { return b.proc.HasExited() }

// LogTail returns the end of the broker's log and output, for failure
// messages.
func (b *Broker) LogTail() string {
	var s strings.Builder
	for _, name := range []string{"stdout.log", "server.log"} {
		data, err := os.ReadFile(filepath.Join(b.dir, name))
		if err != nil {
			fmt.Fprintf(&s, "----- %s: %v\n", name, err)
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		fmt.Fprintf(&s, "----- %s (tail) -----\n%s\n", name, strings.Join(lines[max(0, len(lines)-40):], "\n"))
	}
	return s.String()
}

// newClusterID returns a KRaft cluster id: an unpadded base64url 16-byte
// UUID that starts with a letter (the storage tool reads a leading '-' as a
// flag).
func newClusterID() string {
	for {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		id := base64.RawURLEncoding.EncodeToString(b)
		if c := id[0]; (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') {
			return id
		}
	}
}

// freePorts returns n loopback ports that were free a moment ago. Another
// process may take one before the broker binds it; waitReady's cluster id
// check then fails the test rather than talking to a stranger.
func freePorts(t testing.TB, n int) []string {
	t.Helper()
	var ports []string
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		ls = append(ls, l)
		_, port, _ := net.SplitHostPort(l.Addr().String())
		ports = append(ports, port)
	}
	for _, l := range ls {
		require.NoError(t, l.Close())
	}
	return ports
}
