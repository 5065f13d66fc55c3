// Package testredis starts redis-server processes of a test's own, which
// the test can stop and start again: for outage tests. Everything else uses
// the servers of the test command (internal/testenv).
package testredis

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testenv"
)

// Server is a redis-server of the test's own, which the test stops and
// starts again on the same port and directory. Persistence is on (AOF,
// fsync on every write) so what was applied before a stop survives it,
// unless the server is volatile.
type Server struct {
	t        testing.TB
	bin      string
	dir      string
	addr     string
	volatile bool
	cmd      *exec.Cmd
	exited   chan struct{} // closed when cmd has been waited for
}

// Start starts a redis-server on a free loopback port in a
// temporary directory; it is killed when the test ends.
func Start(t testing.TB) *Server { return start(t, false) }

// StartVolatile starts a redis-server without persistence: stopped and
// started again, it comes back empty, as a cache-configured server, a lost
// volume or a failover to an empty replica leave it.
func StartVolatile(t testing.TB) *Server { return start(t, true) }

func start(t testing.TB, volatile bool) *Server {
	t.Helper()
	p := &Server{t: t, bin: testenv.RedisServerPath(t), dir: t.TempDir(), volatile: volatile}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p.addr = l.Addr().String()
	require.NoError(t, l.Close())
	// Registered after TempDir's own clean-up, so it runs before the
	// directory is removed.
	t.Cleanup(p.kill)
	p.Start()
	return p
}

func (p *Server) port() string {
	_, port, _ := net.SplitHostPort(p.addr)
	return port
}

// Start runs the server (again) and returns once it answers PING and is this
// process (not another server that took the port meanwhile).
func (p *Server) Start() {
	t := p.t
	t.Helper()
	require.True(t, p.cmd == nil || p.HasExited(), "redis-server already running")
	persistence := []string{"--appendonly", "yes", "--appendfsync", "always", "--save", ""}
	if p.volatile {
		persistence = []string{"--appendonly", "no", "--save", ""}
	}
	cmd := exec.Command(p.bin, append(append([]string{
		"--port", p.port(), "--bind", "127.0.0.1", "--daemonize", "no"}, persistence...),
		"--dir", p.dir, "--logfile", filepath.Join(p.dir, "redis.log"))...)
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited

	// A fresh client per attempt: a go-redis pool that failed to dial
	// PoolSize times only probes again once a second.
	newProbe := func() *redis.Client {
		return redis.NewClient(&redis.Options{
			Addr: p.addr, DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond,
			WriteTimeout: 200 * time.Millisecond, MaxRetries: -1, DialerRetries: 1, PoolSize: 1,
		})
	}
	probe := newProbe()
	defer func() { _ = probe.Close() }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := probe.Ping(ctx).Err()
		cancel()
		if err == nil {
			break
		}
		_ = probe.Close()
		probe = newProbe()
		if p.HasExited() {
			t.Fatalf("redis-server on %s exited during start-up (port taken?): %v\n%s", p.addr, err, p.LogTail())
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s does not answer PING: %v\n%s", p.addr, err, p.LogTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
	pid, err := serverPID(probe)
	require.NoError(t, err)
	require.Equal(t, cmd.Process.Pid, pid, "port %s is served by another redis-server, not ours", p.addr)
}

// Stop sends SIGTERM and waits for the process to exit; Redis flushes the
// AOF on the way out.
func (p *Server) Stop() {
	t := p.t
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("redis-server did not exit after SIGTERM\n%s", p.LogTail())
	}
	require.True(t, p.cmd.ProcessState.Success(), "redis-server exits cleanly on SIGTERM: %v\n%s", p.cmd.ProcessState, p.LogTail())
}

// Kill sends SIGKILL and waits for the process to exit: a crash.
func (p *Server) Kill() {
	p.t.Helper()
	p.kill()
	require.True(p.t, p.HasExited())
}

func (p *Server) kill() {
	if p.cmd == nil || p.HasExited() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// HasExited reports whether the process is gone.
func (p *Server) HasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// LogTail returns the end of the server log.
func (p *Server) LogTail() string {
	b, err := os.ReadFile(filepath.Join(p.dir, "redis.log"))
	if err != nil {
		return "(no redis.log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}

func serverPID(rdb *redis.Client) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, errors.New("no process_id in INFO server")
}

// Addr is the server's host:port.
func (p *Server) Addr() string { return p.addr }

// PID is the running server's process id.
func (p *Server) PID() int { return p.cmd.Process.Pid }
