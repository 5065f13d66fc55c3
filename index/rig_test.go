package index

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/consumer"
	"github.com/suppressd/suppressd/internal/kafkaconn"
	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
	"github.com/suppressd/suppressd/internal/teststore"
	"github.com/suppressd/suppressd/ledger"
	"github.com/suppressd/suppressd/rebuild"
	"github.com/suppressd/suppressd/store/redisstore"
	"github.com/suppressd/suppressd/suppression"
)

// rig is the write side of a deployment on the test command's real Kafka
// and Redis: a ledger topic, a store with generation g1 built, and the real
// apply stage folding the ledger into the store. Replicas (replica) read it
// as the api role does.
type rig struct {
	t        testing.TB
	brokers  []string
	ledger   string
	group    string
	rdb      *redis.Client
	opts     redisstore.Options
	store    *redisstore.Store // the apply stage's
	rebuilds *redisstore.Rebuilds
	w        *kafka.Writer
	logs     *testenv.Buffer
}

// testDB is the database the index's tests use on the shared test server.
// A snapshot SCANs its database's whole keyspace, as it would a production
// Redis that holds suppressd's keys alone; in database 0 it would wade
// through every other test's keys.
const testDB = 7

// applyRefresh is how often the rig's writers re-read the generation
// pointer: short, so a rebuild's grace is short.
const applyRefresh = 50 * time.Millisecond

func newRig(t testing.TB, partitions int) *rig {
	t.Helper()
	return newRigWith(t, partitions, func(s suppression.Store) suppression.Store { return s })
}

// newRigWith is newRig with the apply stage writing through wrap's store.
func newRigWith(t testing.TB, partitions int, wrap func(suppression.Store) suppression.Store) *rig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := &rig{t: t, brokers: testenv.KafkaBrokers(t), ledger: testkafka.Unique("ledger"), logs: &testenv.Buffer{}}
	r.group = r.ledger + "-apply"
	testkafka.CreateTopic(ctx, t, r.brokers[0], r.ledger, partitions)
	dlq := r.ledger + "-dlq"
	testkafka.CreateTopic(ctx, t, r.brokers[0], dlq, 1)
	r.rdb = redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t), DB: testDB, PoolSize: 32})
	t.Cleanup(func() { _ = r.rdb.Close() })
	r.opts = redisstore.Options{Prefix: teststore.Prefix(), Keying: "index-test", Refresh: applyRefresh}
	r.store = teststore.Build(t, r.rdb, r.opts)
	var err error
	r.rebuilds, err = redisstore.NewRebuilds(r.rdb, r.opts)
	require.NoError(t, err)
	t.Cleanup(func() { r.dropAll(context.Background()) })
	r.w = testkafka.Writer(r.brokers, r.ledger)
	r.w.BatchSize = 1000
	t.Cleanup(func() { _ = r.w.Close() })
	require.NoError(t, r.w.WriteMessages(ctx, consumer.GenesisMessage(time.Now())))

	reader := kafka.NewReader(kafka.ReaderConfig{
		Brokers: r.brokers, GroupID: r.group, GroupTopics: []string{r.ledger},
		StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond, CommitInterval: 0,
		ErrorLogger: testkafka.Logger(t),
	})
	dlqW := testkafka.Writer(r.brokers, dlq)
	log := slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c := consumer.New(reader, dlqW, &consumer.Apply{Store: wrap(r.store)}, consumer.Options{
		Stage: "apply", BatchWait: 5 * time.Millisecond, BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
	}, log, prometheus.NewRegistry())
	actx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Run(actx)
		_ = reader.Close()
		_ = dlqW.Close()
	}()
	t.Cleanup(func() { stop(); <-done })
	return r
}

// write puts records on the ledger, each keyed by its first key as the
// ingest stage keys them.
func (r *rig) write(ctx context.Context, recs ...ledger.Record) error {
	msgs := make([]kafka.Message, len(recs))
	for i := range recs {
		b, err := ledger.Encode(&recs[i])
		require.NoError(r.t, err)
		msgs[i] = kafka.Message{Key: recs[i].Keys[0][:], Value: b, Time: recs[i].Reference}
	}
	return r.w.WriteMessages(ctx, msgs...)
}

var recordIDs atomic.Int64

// record is an unsubscribe of keys in namespace ns, now.
func record(ns string, keys ...suppression.StorageKey) ledger.Record {
	now := time.Now()
	return ledger.Record{Type: suppression.EventUnsubscribe, Reason: suppression.ReasonUnsubscribe, Origin: suppression.OriginRecipient,
		Namespace: ns, Scopes: []suppression.Scope{suppression.ScopeGlobal}, Keys: keys, Source: "/index-test",
		ID: "e" + strconv.FormatInt(recordIDs.Add(1), 10), OccurredAt: now, Reference: now}
}

// rebuild replays the ledger into a new generation and switches to it, as
// `suppressd rebuild` does (the store watch's, with grace 0, after the
// store was emptied).
func (r *rig) rebuild(ctx context.Context, grace time.Duration, dropOld bool) (rebuild.Progress, error) {
	return rebuild.Run(ctx, gens{r.rebuilds}, consumer.LedgerSource{Kafka: kafkaconn.Config{Brokers: r.brokers, DialTimeout: 10 * time.Second}, Topic: r.ledger},
		rebuild.Options{Owner: "index-test", Grace: grace, DropOld: dropOld, Lease: 10 * time.Second})
}

type gens struct{ *redisstore.Rebuilds }

func (g gens) Begin(ctx context.Context, gen, owner string, lease time.Duration) (rebuild.Target, error) {
	t, err := g.Rebuilds.Begin(ctx, gen, owner, lease)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// dropAll deletes every key of the rig's prefix: the store emptied, as a
// FLUSHALL would leave it (the shared server keeps everyone else's).
func (r *rig) dropAll(ctx context.Context) {
	iter := r.rdb.Scan(ctx, 0, r.opts.Prefix+":*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			r.rdb.Unlink(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		r.rdb.Unlink(ctx, batch...)
	}
}

// replica is an API replica's index on the rig, its connections to Kafka
// and Redis going through faults.
type replica struct {
	idx   *Index
	store *Store
	reg   *prometheus.Registry
	stop  func()
}

func (r *rig) replica(f *faults, feed func(Feed) Feed, opts Options) *replica {
	r.t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(r.t), DB: testDB, Dialer: f.dial, ReadTimeout: 500 * time.Millisecond,
		WriteTimeout: 500 * time.Millisecond, DialTimeout: time.Second})
	ro := r.opts
	ro.Refresh = opts.MaxLag / 5 // as the api role sets it with an index
	s, err := redisstore.New(rdb, ro)
	require.NoError(r.t, err)
	var fd Feed = consumer.LedgerFeed{Kafka: kafkaconn.Config{Brokers: r.brokers, DialTimeout: 2 * time.Second}, Topic: r.ledger, Group: r.group,
		Probe: opts.MaxLag / 5, Dial: f.dial}
	if feed != nil {
		fd = feed(fd)
	}
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	idx := New(s, fd, opts, log, reg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = idx.Run(ctx) }()
	rep := &replica{idx: idx, store: NewStore(s, idx), reg: reg}
	var once sync.Once
	rep.stop = func() { once.Do(func() { cancel(); <-done; _ = rdb.Close() }) }
	r.t.Cleanup(rep.stop)
	return rep
}

// waitServing waits until the replica's index answers from memory.
func (rep *replica) waitServing(t testing.TB, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool { v, _ := rep.idx.serving(time.Now()); return v != nil }, within, 10*time.Millisecond,
		"the index serves (status %+v)", rep.idx.Status())
}

// faults sits between a replica and the servers: every connection it dials
// can be delayed (each read returns its data that much later), stalled
// (reads wait until the stall ends) or cut.
type faults struct {
	mu      sync.Mutex
	delay   time.Duration
	stalled chan struct{}
	conns   map[*faultConn]struct{}
}

func newFaults() *faults { return &faults{conns: map[*faultConn]struct{}{}} }

func (f *faults) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	fc := &faultConn{Conn: c, f: f, closed: make(chan struct{})}
	f.mu.Lock()
	f.conns[fc] = struct{}{}
	f.mu.Unlock()
	return fc, nil
}

func (f *faults) setDelay(d time.Duration) { f.mu.Lock(); f.delay = d; f.mu.Unlock() }

// stall makes reads wait until the returned function is called.
func (f *faults) stall() func() {
	ch := make(chan struct{})
	f.mu.Lock()
	f.stalled = ch
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		if f.stalled == ch {
			f.stalled = nil
		}
		f.mu.Unlock()
		close(ch)
	}
}

// cut closes every connection: the clients reconnect.
func (f *faults) cut() {
	f.mu.Lock()
	conns := f.conns
	f.conns = map[*faultConn]struct{}{}
	f.mu.Unlock()
	for c := range conns {
		_ = c.Close()
	}
}

type faultConn struct {
	net.Conn
	f      *faults
	once   sync.Once
	closed chan struct{}

	mu       sync.Mutex
	deadline time.Time // the read deadline
	pending  []byte    // read from the server, not yet given to the client
	perr     error     // and the error that came with it
	arrived  time.Time
}

// Read gives the client what the server sent once no stall holds it and
// the delay has passed since it arrived; a read deadline that passes first
// times the read out, the data kept for the next read, as a slow network
// would.
func (c *faultConn) Read(p []byte) (int, error) {
	if len(c.pending) == 0 && c.perr == nil {
		buf := make([]byte, len(p))
		n, err := c.Conn.Read(buf)
		if n == 0 {
			return 0, err
		}
		c.pending, c.perr, c.arrived = buf[:n], err, time.Now()
	}
	for {
		c.f.mu.Lock()
		d, st := c.f.delay, c.f.stalled
		c.f.mu.Unlock()
		if st == nil && time.Since(c.arrived) >= d {
			break
		}
		c.mu.Lock()
		dl := c.deadline
		c.mu.Unlock()
		select {
		case <-c.closed:
			return 0, net.ErrClosed
		default:
		}
		if !dl.IsZero() && time.Now().After(dl) {
			return 0, os.ErrDeadlineExceeded
		}
		time.Sleep(time.Millisecond)
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	if len(c.pending) > 0 {
		return n, nil
	}
	err := c.perr
	c.pending, c.perr = nil, nil
	return n, err
}

func (c *faultConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *faultConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

func (c *faultConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	c.f.mu.Lock()
	delete(c.f.conns, c)
	c.f.mu.Unlock()
	return c.Conn.Close()
}
