// Package testsentinel starts a Redis Sentinel topology of a test's own: a
// master, one replica and three Sentinels, on free loopback ports in
// t.TempDir(), all killed when the test ends. Failover tests kill -9 the
// master mid-stream and watch the Sentinels promote the replica, so the
// topology is never shared between tests.
//
// The Sentinels are tuned to fail over in a few seconds: a master is down
// after DownAfter without a valid reply, two Sentinels must agree, and an
// attempt that stalls is retried after 2×FailoverTimeout.
package testsentinel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testenv"
)

const (
	// MasterName is the name the Sentinels monitor the master under.
	MasterName = "suppressd"
	// DownAfter is the Sentinels' down-after-milliseconds.
	DownAfter = time.Second
	// FailoverTimeout is the Sentinels' failover-timeout.
	FailoverTimeout = 3 * time.Second
	// Quorum is how many Sentinels must agree the master is down.
	Quorum = 2

	startTimeout = 15 * time.Second
	readyTimeout = 30 * time.Second
)

// Topology is a master, its replica and three Sentinels monitoring them.
// Master and Replica are the roles the servers started in; after a
// failover the Sentinels say which is which (WaitFailover).
type Topology struct {
	MasterName string
	// Sentinels are the Sentinels' host:port, for
	// redisconn.Config{Addrs: Sentinels, MasterName: MasterName}.
	Sentinels []string
	Master    *Node
	Replica   *Node

	t         testing.TB
	sentinels []*Node
}

// Start starts the topology and returns once every Sentinel knows the
// master, the replica (in sync) and the two other Sentinels, so a failover
// can be authorised. Everything is killed when the test ends.
func Start(t testing.TB) *Topology {
	t.Helper()
	bin := testenv.RedisServerPath(t)
	ports := freePorts(t, 5)
	tp := &Topology{MasterName: MasterName, t: t}
	node := func(name, port string, conf []string, args ...string) *Node {
		return newNode(t, bin, name, port, conf, args...)
	}
	data := []string{
		"save \"\"", "appendonly yes", "appendfsync always",
		// A replica (re)joining gets its full sync at once, not after 5 s.
		"repl-diskless-sync yes", "repl-diskless-sync-delay 0",
	}
	tp.Master = node("master", ports[0], data)
	tp.Replica = node("replica", ports[1], append(data, "replicaof 127.0.0.1 "+ports[0]))
	tp.Master.Start()
	tp.Replica.Start()
	tp.WaitReplicating(tp.Replica, tp.Master)

	for i, port := range ports[2:] {
		conf := []string{
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %s %d", MasterName, ports[0], Quorum),
			fmt.Sprintf("sentinel down-after-milliseconds %s %d", MasterName, DownAfter.Milliseconds()),
			fmt.Sprintf("sentinel failover-timeout %s %d", MasterName, FailoverTimeout.Milliseconds()),
			fmt.Sprintf("sentinel parallel-syncs %s 1", MasterName),
		}
		s := node("sentinel"+strconv.Itoa(i+1), port, conf, "--sentinel")
		tp.sentinels = append(tp.sentinels, s)
		tp.Sentinels = append(tp.Sentinels, s.Addr())
	}
	var wg sync.WaitGroup
	for _, s := range tp.sentinels {
		wg.Go(func() { s.start() })
	}
	wg.Wait()
	for _, s := range tp.sentinels {
		if s.startErr != nil {
			t.Fatal(s.startErr)
		}
	}
	tp.waitReady()
	return tp
}

// waitReady waits until every Sentinel names the master, sees the replica
// with its link up, and counts 3 usable Sentinels (CKQUORUM).
func (tp *Topology) waitReady() {
	t := tp.t
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for _, s := range tp.sentinels {
		c := s.client()
		for {
			err := tp.sentinelReady(c)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				_ = c.Close()
				t.Fatalf("sentinel %s not ready after %s: %v\n%s", s.Addr(), readyTimeout, err, tp.Logs())
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = c.Close()
	}
}

func (tp *Topology) sentinelReady(c *redis.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	addr, err := c.Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", tp.MasterName).StringSlice()
	if err != nil {
		return err
	}
	if got := net.JoinHostPort(addr[0], addr[1]); got != tp.Master.Addr() {
		return fmt.Errorf("names master %s, want %s", got, tp.Master.Addr())
	}
	replicas, err := c.Do(ctx, "SENTINEL", "REPLICAS", tp.MasterName).Slice()
	if err != nil {
		return err
	}
	found := false
	for _, r := range replicas {
		f := fields(r)
		if net.JoinHostPort(f["ip"], f["port"]) == tp.Replica.Addr() && f["flags"] == "slave" && f["master-link-status"] == "ok" {
			found = true
		}
	}
	if !found {
		return fmt.Errorf("replica %s not seen in sync: %v", tp.Replica.Addr(), replicas)
	}
	q, err := c.Do(ctx, "SENTINEL", "CKQUORUM", tp.MasterName).Text()
	if err != nil {
		return err
	}
	if !strings.HasPrefix(q, "OK 3 usable") {
		return errors.New(q)
	}
	return nil
}

// fields turns a Sentinel's flat or map reply about an instance into a map.
func fields(v any) map[string]string {
	out := map[string]string{}
	switch v := v.(type) {
	case []any:
		for i := 0; i+1 < len(v); i += 2 {
			out[fmt.Sprint(v[i])] = fmt.Sprint(v[i+1])
		}
	case map[any]any:
		for k, val := range v {
			out[fmt.Sprint(k)] = fmt.Sprint(val)
		}
	}
	return out
}

// MasterAddr returns the master's address if every Sentinel names the same
// one, else an error that says what each said.
func (tp *Topology) MasterAddr(ctx context.Context) (string, error) {
	var (
		addr string
		said []string
		err  error
	)
	for _, s := range tp.sentinels {
		c := s.client()
		a, e := c.Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", tp.MasterName).StringSlice()
		_ = c.Close()
		switch {
		case e != nil:
			said = append(said, s.Addr()+": "+e.Error())
			err = errors.New("no agreement")
		case addr == "":
			addr = net.JoinHostPort(a[0], a[1])
			said = append(said, s.Addr()+": "+addr)
		default:
			said = append(said, s.Addr()+": "+net.JoinHostPort(a[0], a[1]))
			if net.JoinHostPort(a[0], a[1]) != addr {
				err = errors.New("no agreement")
			}
		}
	}
	if err != nil {
		return "", fmt.Errorf("sentinels disagree on the master: %s", strings.Join(said, "; "))
	}
	return addr, nil
}

// WaitFailover waits until every Sentinel names a master other than old and
// that server says it is a master, and returns it. It fails the test after
// 30 s.
func (tp *Topology) WaitFailover(old *Node) *Node {
	t := tp.t
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		addr, err := tp.MasterAddr(ctx)
		cancel()
		switch {
		case err != nil:
			last = err
		case addr == old.Addr():
			last = fmt.Errorf("the sentinels still name %s", addr)
		default:
			n := tp.node(addr)
			if n == nil {
				t.Fatalf("the sentinels name %s, which is none of ours", addr)
			}
			role, err := n.info("replication", "role")
			if err == nil && role == "master" {
				return n
			}
			last = fmt.Errorf("%s is named master but says role %q (%v)", addr, role, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no failover away from %s within %s: %v\n%s", old.Addr(), readyTimeout, last, tp.Logs())
	return nil
}

// WaitReplicating waits until replica is a replica of master with its link
// up and no sync in progress. A restarted old master is turned into a
// replica by the Sentinels only once it has reported itself a master for 8
// seconds (Sentinel's SENTINEL_PUBLISH_PERIOD*4); a restarted replica
// resumes at once.
func (tp *Topology) WaitReplicating(replica, master *Node) {
	t := tp.t
	t.Helper()
	_, port, _ := net.SplitHostPort(master.Addr())
	deadline := time.Now().Add(readyTimeout)
	var last string
	for time.Now().Before(deadline) {
		info, err := replica.infoSection("replication")
		if err == nil && info["role"] == "slave" && info["master_port"] == port &&
			info["master_link_status"] == "up" && info["master_sync_in_progress"] == "0" {
			return
		}
		last = fmt.Sprintf("%v %v", info, err)
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s does not replicate %s after %s: %s\n%s", replica.Addr(), master.Addr(), readyTimeout, last, tp.Logs())
}

func (tp *Topology) node(addr string) *Node {
	for _, n := range []*Node{tp.Master, tp.Replica} {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}

// Logs returns the end of every server's and Sentinel's log, for failure
// messages.
func (tp *Topology) Logs() string {
	var b strings.Builder
	for _, n := range append([]*Node{tp.Master, tp.Replica}, tp.sentinels...) {
		fmt.Fprintf(&b, "----- %s (%s) -----\n%s\n", n.name, n.Addr(), n.LogTail())
	}
	return b.String()
}

// Node is one redis-server (or Sentinel) process of the topology. It keeps
// its port, directory and config file across Kill and Start, so a restarted
// server is the same instance to the Sentinels, with its AOF and whatever
// role they last wrote into its config.
type Node struct {
	t        testing.TB
	name     string
	bin      string
	dir      string
	addr     string
	args     []string
	proc     testenv.Proc
	startErr error
}

func newNode(t testing.TB, bin, name, port string, conf []string, args ...string) *Node {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "redis.conf")
	lines := append([]string{
		"port " + port, "bind 127.0.0.1", "daemonize no",
		"dir " + dir, "logfile " + filepath.Join(dir, "redis.log"),
	}, conf...)
	require.NoError(t, os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
	n := &Node{t: t, name: name, bin: bin, dir: dir, addr: net.JoinHostPort("127.0.0.1", port), args: append([]string{file}, args...)}
	// After t.TempDir's removal is registered, so it runs before it.
	t.Cleanup(n.kill)
	return n
}

// Addr is the node's host:port.
func (n *Node) Addr() string { return n.addr }

// PID is the running process's id.
func (n *Node) PID() int {
	return n.proc.PID()
}

// Start runs the node (again) and returns once it answers PING and is this
// process, not another server that took the port meanwhile.
func (n *Node) Start() {
	n.t.Helper()
	n.start()
	if n.startErr != nil {
		n.t.Fatal(n.startErr)
	}
}

// start is Start without t.Fatal, for starting several at once.
func (n *Node) start() {
	n.startErr = nil
	if !n.HasExited() {
		n.startErr = fmt.Errorf("%s (%s) is already running", n.name, n.addr)
		return
	}
	if err := n.proc.Start(exec.Command(n.bin, n.args...)); err != nil {
		n.startErr = err
		return
	}

	deadline := time.Now().Add(startTimeout)
	for {
		pid, err := n.pid()
		if err == nil {
			if ours := n.proc.PID(); pid != ours {
				n.startErr = fmt.Errorf("%s: port %s is served by another redis-server (pid %d), not ours (%d)", n.name, n.addr, pid, ours)
			}
			return
		}
		if n.HasExited() {
			n.startErr = fmt.Errorf("%s on %s exited during start-up (port taken?): %v\n%s", n.name, n.addr, err, n.LogTail())
			return
		}
		if time.Now().After(deadline) {
			n.startErr = fmt.Errorf("%s on %s does not answer: %v\n%s", n.name, n.addr, err, n.LogTail())
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill sends SIGKILL, as a crash would, and waits for the process to be
// gone.
func (n *Node) Kill() {
	n.t.Helper()
	require.False(n.t, n.HasExited(), "%s is not running", n.name)
	n.kill()
}

func (n *Node) kill() { n.proc.Kill() }

// HasExited reports whether the process is gone (or was never started).
func (n *Node) HasExited() bool { return n.proc.HasExited() }

// Client returns a plain client of this node alone (not through the
// Sentinels), closed when the test ends.
func (n *Node) Client() *redis.Client {
	c := n.client()
	n.t.Cleanup(func() { _ = c.Close() })
	return c
}

func (n *Node) client() *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: n.addr, DialTimeout: 500 * time.Millisecond, ReadTimeout: 500 * time.Millisecond,
		WriteTimeout: 500 * time.Millisecond, MaxRetries: -1, PoolSize: 1,
	})
}

func (n *Node) infoSection(section string) (map[string]string, error) {
	c := n.client()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, err := c.Info(ctx, section).Result()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			out[k] = v
		}
	}
	return out, nil
}

func (n *Node) info(section, field string) (string, error) {
	m, err := n.infoSection(section)
	if err != nil {
		return "", err
	}
	v, ok := m[field]
	if !ok {
		return "", fmt.Errorf("no %s in INFO %s", field, section)
	}
	return v, nil
}

func (n *Node) pid() (int, error) {
	v, err := n.info("server", "process_id")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(v)
}

// LogTail returns the end of the node's log.
func (n *Node) LogTail() string {
	b, err := os.ReadFile(filepath.Join(n.dir, "redis.log"))
	if err != nil {
		return "(no redis.log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}

// freePorts returns n distinct free loopback ports, held open together
// while they are picked so none is returned twice.
func freePorts(t testing.TB, n int) []string {
	t.Helper()
	var (
		ports []string
		ls    []net.Listener
	)
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
