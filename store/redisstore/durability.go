package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/suppressd/suppressd/suppression"
)

// Durability is when an Apply counts as done, and so when the consumer may
// commit the Kafka offsets of what it applied. The zero value is "accepted".
//
//   - accepted: Redis executed the writes. A crash of the master before its
//     AOF is synced (appendfsync everysec: up to a second), or a failover to
//     a replica that had not received them, loses them although their
//     offsets are committed; run `suppressd rebuild` after either.
//   - replicas:N: WAIT confirmed that N replicas received the writes. A
//     failover to one of them loses nothing committed.
//   - fsync: WAITAOF confirmed the master's AOF is on disk (Redis 7.2+).
//   - fsync+replicas:N: WAITAOF confirmed the master's AOF and N replicas'
//     AOFs are on disk (Redis 7.2+).
//
// When the confirmation does not come within Timeout, Apply fails (the
// writes stay: they are idempotent) and the consumer retries the batch
// without committing: it waits rather than commit what could be lost.
type Durability struct {
	Replicas int
	Fsync    bool
	Timeout  time.Duration // default 5s

	// wait takes the confirmed path (WAIT 0) even for accepted: for the
	// package's tests, which have no replicas to wait for.
	wait bool
}

// ParseDurability reads "accepted", "replicas:N", "fsync" or
// "fsync+replicas:N".
func ParseDurability(s string) (Durability, error) {
	var d Durability
	s = strings.TrimSpace(s)
	if s == "" || s == "accepted" {
		return d, nil
	}
	rest, fsync := strings.CutPrefix(s, "fsync")
	d.Fsync = fsync
	rest = strings.TrimPrefix(rest, "+")
	if rest != "" {
		n, ok := strings.CutPrefix(rest, "replicas:")
		r, err := strconv.Atoi(n)
		if !ok || err != nil || r < 1 {
			return d, fmt.Errorf("%q: want accepted, replicas:N, fsync or fsync+replicas:N (N at least 1)", s)
		}
		d.Replicas = r
	} else if !fsync {
		return d, fmt.Errorf("%q: want accepted, replicas:N, fsync or fsync+replicas:N", s)
	}
	return d, nil
}

func (d Durability) String() string {
	switch {
	case d.Fsync && d.Replicas > 0:
		return "fsync+replicas:" + strconv.Itoa(d.Replicas)
	case d.Fsync:
		return "fsync"
	case d.Replicas > 0:
		return "replicas:" + strconv.Itoa(d.Replicas)
	}
	return "accepted"
}

func (d Durability) accepted() bool { return !d.Fsync && d.Replicas == 0 && !d.wait }

func (d Durability) timeout() time.Duration {
	if d.Timeout <= 0 {
		return 5 * time.Second
	}
	return d.Timeout
}

// CheckDurability refuses a durability the servers cannot give: fsync needs
// WAITAOF, which Redis 7.2 introduced. It asks every master.
func (s *Store) CheckDurability(ctx context.Context) error {
	d := s.opts.Durability
	if !d.Fsync {
		return nil
	}
	return forEachMaster(ctx, s.rdb, func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "server").Result()
		if err != nil {
			return fmt.Errorf("%w: %w", suppression.ErrUnavailable, err)
		}
		v := infoField(info, "redis_version")
		if !atLeast(v, 7, 2) {
			return fmt.Errorf("durability %s needs WAITAOF, which Redis 7.2 introduced; %s runs Redis %s (use accepted or replicas:N)",
				d, c.Options().Addr, v)
		}
		return nil
	})
}

func infoField(info, field string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}

// atLeast compares a "major.minor.patch" version.
func atLeast(v string, major, minor int) bool {
	parts := strings.Split(v, ".")
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// applyDurably runs the apply scripts and then WAIT or WAITAOF on the same
// connection (they confirm what that connection wrote), one connection per
// master the batch touches.
func (g *generation) applyDurably(ctx context.Context, calls []applyCall) (int, error) {
	byNode := map[*redis.Client][]applyCall{}
	var order []*redis.Client
	switch c := g.rdb.(type) {
	case *redis.ClusterClient:
		for _, call := range calls {
			node, err := c.MasterForKey(ctx, call.keys[0])
			if err != nil {
				return 0, err
			}
			if _, ok := byNode[node]; !ok {
				order = append(order, node)
			}
			byNode[node] = append(byNode[node], call)
		}
	case *redis.Client:
		byNode[c], order = calls, []*redis.Client{c}
	default:
		return 0, fmt.Errorf("durability %s needs a single-node, Sentinel or cluster client, not %T", g.dur, g.rdb)
	}
	changed := 0
	for _, node := range order {
		n, err := g.applyOnNode(ctx, node, byNode[node])
		if err != nil {
			if c, ok := g.rdb.(*redis.ClusterClient); ok {
				c.ReloadState(ctx) // slots may have moved
			}
			return 0, err
		}
		changed += n
	}
	return changed, nil
}

func (g *generation) applyOnNode(ctx context.Context, node *redis.Client, calls []applyCall) (int, error) {
	conn := node.Conn()
	defer conn.Close()
	cmds := make([]*redis.Cmd, 0, len(calls))
	_, err := conn.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, c := range calls {
			cmds = append(cmds, applyScript.EvalSha(ctx, p, c.keys, c.args...))
		}
		return nil
	})
	changed := 0
	for _, c := range cmds {
		n, cerr := c.Int()
		if cerr != nil {
			return 0, cerr
		}
		changed += n
	}
	if err != nil {
		return 0, err
	}
	d := g.dur
	if d.Fsync {
		acks, err := conn.WaitAOF(ctx, 1, d.Replicas, d.timeout()).Result()
		if err != nil {
			return 0, fmt.Errorf("WAITAOF: %w", err)
		}
		if len(acks) != 2 || acks[0] < 1 || acks[1] < int64(d.Replicas) {
			return 0, fmt.Errorf("%w: durability %s not reached within %s on %s (local, replicas synced: %v)",
				errNotDurable, d, d.timeout(), node.Options().Addr, acks)
		}
		return changed, nil
	}
	n, err := conn.Wait(ctx, d.Replicas, d.timeout()).Result()
	if err != nil {
		return 0, fmt.Errorf("WAIT: %w", err)
	}
	if n < int64(d.Replicas) {
		return 0, fmt.Errorf("%w: durability %s not reached within %s on %s: %d of %d replicas acknowledged",
			errNotDurable, d, d.timeout(), node.Options().Addr, n, d.Replicas)
	}
	return changed, nil
}

// errNotDurable: the writes were made but not confirmed as durable as
// configured; the caller must not count them done.
var errNotDurable = suppression.ErrNotDurable
