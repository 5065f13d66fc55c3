package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/suppressd/suppressd/suppression"
)

// Rebuilds is the rebuild state machine of a store's generations: which
// generation is being built, by whom (a lease, so a rebuilder that died
// does not block the next one for ever), and the switch that makes it the
// active one. It is the only thing that writes the generation pointer and
// the group markers. Safe for concurrent use, from any number of processes.
type Rebuilds struct {
	rdb  redis.UniversalClient
	opts Options
	key  string
}

// NewRebuilds returns the state machine of the store laid out by opts.
func NewRebuilds(rdb redis.UniversalClient, opts Options) (*Rebuilds, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	return &Rebuilds{rdb: rdb, opts: opts, key: opts.Prefix + ":generations"}, nil
}

// ErrRebuildBusy is returned by Begin while another process holds the lease
// of a rebuild.
var ErrRebuildBusy = errors.New("another rebuild is under way")

// State is what the pointer says.
type State struct {
	Active   string // "" when no generation was ever built (or Redis lost it)
	Building string
	Owner    string    // who holds the building lease
	Expires  time.Time // when the lease runs out unless renewed
}

// State reads the pointer.
func (r *Rebuilds) State(ctx context.Context) (State, error) {
	f, err := r.rdb.HGetAll(ctx, r.key).Result()
	if err != nil {
		return State{}, fmt.Errorf("%w: read the generation pointer: %w", suppression.ErrUnavailable, err)
	}
	st := State{Active: f["active"], Building: f["building"]}
	if owner, exp, ok := strings.Cut(f["lease"], " "); ok {
		ms, _ := strconv.ParseInt(exp, 10, 64)
		st.Owner, st.Expires = owner, time.UnixMilli(ms)
	}
	return st, nil
}

// Active names the active generation, "" when there is none.
func (r *Rebuilds) Active(ctx context.Context) (string, error) {
	st, err := r.State(ctx)
	return st.Active, err
}

// Next names the generation after the active one (g1 when there is none).
func (r *Rebuilds) Next(ctx context.Context) (string, error) {
	st, err := r.State(ctx)
	if err != nil {
		return "", err
	}
	if st.Active == "" {
		return "g1", nil
	}
	n, err := strconv.Atoi(strings.TrimPrefix(st.Active, "g"))
	if err != nil {
		return st.Active + "-2", nil
	}
	return "g" + strconv.Itoa(n+1), nil
}

// The scripts run on the pointer hash alone (one key, one slot) with the
// server's clock, so replicas with skewed clocks agree on leases.
var (
	beginScript = redis.NewScript(`
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if redis.call('HGET', KEYS[1], 'active') == ARGV[1] then
  return redis.error_reply('ACTIVE generation ' .. ARGV[1] .. ' is the active one')
end
local building = redis.call('HGET', KEYS[1], 'building')
local lease = redis.call('HGET', KEYS[1], 'lease')
if building and lease then
  local owner, exp = string.match(lease, '^(.*) (%d+)$')
  if owner ~= ARGV[3] and tonumber(exp) > now then
    return redis.error_reply('BUSY generation ' .. building .. ' is being built by ' .. owner)
  end
end
redis.call('HSET', KEYS[1], 'building', ARGV[1], 'layout:' .. ARGV[1], ARGV[2], 'lease', ARGV[3] .. ' ' .. (now + tonumber(ARGV[4])))
return 1`)
	renewScript = redis.NewScript(`
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local lease = redis.call('HGET', KEYS[1], 'lease') or ''
local owner = string.match(lease, '^(.*) %d+$')
if redis.call('HGET', KEYS[1], 'building') ~= ARGV[1] or owner ~= ARGV[2] then
  return redis.error_reply('LOST the rebuild of ' .. ARGV[1] .. ' is no longer ours')
end
if ARGV[3] == 'finish' then
  redis.call('HSET', KEYS[1], 'active', ARGV[1], 'since:' .. ARGV[1], now)
  redis.call('HDEL', KEYS[1], 'building', 'lease')
elseif ARGV[3] == 'abort' then
  redis.call('HDEL', KEYS[1], 'building', 'lease')
else
  redis.call('HSET', KEYS[1], 'lease', ARGV[2] .. ' ' .. (now + tonumber(ARGV[3])))
end
return 1`)
)

// Target is a generation being built: the rebuild replays into it.
type Target struct {
	g *generation
}

// Generation names the generation.
func (t *Target) Generation() string { return t.g.gen }

// Apply folds writes into the generation being built.
func (t *Target) Apply(ctx context.Context, writes []suppression.Write) (int, error) {
	return t.g.apply(ctx, writes)
}

// Begin announces gen as being built by owner, who holds it for lease
// unless it renews: from the next pointer refresh on, every Store writes to
// it as well. It records gen's layout and writes its group markers, so its
// writes go through; readers keep reading the active generation. Begin
// fails with ErrRebuildBusy while another owner's lease runs, and when gen
// is the active generation. Taking over an expired lease is allowed: the
// earlier rebuilder died, and replaying again is harmless.
func (r *Rebuilds) Begin(ctx context.Context, gen, owner string, lease time.Duration) (*Target, error) {
	if gen == "" || strings.ContainsAny(gen, ":{} ") {
		return nil, fmt.Errorf("generation %q: want a name without ':', '{', '}' or spaces", gen)
	}
	err := beginScript.Run(ctx, r.rdb, []string{r.key}, gen, r.opts.Layout(), owner, lease.Milliseconds()).Err()
	switch {
	case err == nil:
	case strings.HasPrefix(err.Error(), "BUSY "):
		return nil, fmt.Errorf("%w: %s", ErrRebuildBusy, strings.TrimPrefix(err.Error(), "BUSY "))
	case strings.HasPrefix(err.Error(), "ACTIVE "):
		return nil, errors.New(strings.TrimPrefix(err.Error(), "ACTIVE "))
	default:
		return nil, fmt.Errorf("%w: begin rebuild: %w", suppression.ErrUnavailable, err)
	}
	g := newGeneration(r.rdb, r.opts, gen)
	if err := g.writeMarkers(ctx); err != nil {
		return nil, err
	}
	return &Target{g: g}, nil
}

func (r *Rebuilds) step(ctx context.Context, gen, owner, what string) error {
	err := renewScript.Run(ctx, r.rdb, []string{r.key}, gen, owner, what).Err()
	if err != nil && strings.HasPrefix(err.Error(), "LOST ") {
		return errors.New(strings.TrimPrefix(err.Error(), "LOST "))
	}
	if err != nil {
		return fmt.Errorf("%w: %w", suppression.ErrUnavailable, err)
	}
	return nil
}

// Renew extends owner's lease on the rebuild of gen; it fails if the lease
// was taken over.
func (r *Rebuilds) Renew(ctx context.Context, gen, owner string, lease time.Duration) error {
	return r.step(ctx, gen, owner, strconv.FormatInt(lease.Milliseconds(), 10))
}

// Finish makes gen the active generation, once every group marker is
// present (a server that lost its data during the rebuild fails it). It
// records when, by the server's clock ("since:<gen>"), which tells two
// builds of one generation name apart (Store.ActiveGeneration).
func (r *Rebuilds) Finish(ctx context.Context, gen, owner string) error {
	missing, err := newGeneration(r.rdb, r.opts, gen).missingMarkers(ctx)
	if err != nil {
		return err
	}
	if missing > 0 {
		return fmt.Errorf("%w: generation %s lost %d group markers while it was built", suppression.ErrNotBuilt, gen, missing)
	}
	return r.step(ctx, gen, owner, "finish")
}

// Abort forgets owner's rebuild of gen; the half-built generation's keys
// stay until dropped.
func (r *Rebuilds) Abort(ctx context.Context, gen, owner string) error {
	return r.step(ctx, gen, owner, "abort")
}

// Drop deletes every key of generation gen, on every master, and forgets
// its layout. It refuses the active generation and one being built.
func (r *Rebuilds) Drop(ctx context.Context, gen string) (int64, error) {
	st, err := r.State(ctx)
	if err != nil {
		return 0, err
	}
	if gen == st.Active || gen == st.Building {
		return 0, fmt.Errorf("generation %s is in use (active %q, building %q)", gen, st.Active, st.Building)
	}
	pattern := names{opts: r.opts, gen: gen}.pattern()
	var n atomic.Int64 // masters are scanned in parallel
	drop := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		var batch []string
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			// One command each (pipelined): the keys span slots.
			_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, k := range batch {
					p.Unlink(ctx, k)
				}
				return nil
			})
			n.Add(int64(len(batch)))
			batch = batch[:0]
			return err
		}
		for iter.Next(ctx) {
			batch = append(batch, iter.Val())
			if len(batch) == 500 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		return flush()
	}
	if err := forEachMaster(ctx, r.rdb, drop); err != nil {
		return n.Load(), fmt.Errorf("drop generation %s: %w", gen, err)
	}
	if err := r.rdb.HDel(ctx, r.key, "layout:"+gen, "since:"+gen).Err(); err != nil {
		return n.Load(), err
	}
	return n.Load(), nil
}

// forEachMaster runs fn on every master: the cluster's, or the one server.
func forEachMaster(ctx context.Context, rdb redis.UniversalClient, fn func(context.Context, *redis.Client) error) error {
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, fn)
	case *redis.Client:
		return fn(ctx, c)
	}
	return fmt.Errorf("scanning needs a single-node, Sentinel or cluster client, not %T", rdb)
}
