package redisstore

import (
	"bytes"
	"cmp"
	"context"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/suppressd/suppressd/suppression"
)

var (
	//go:embed apply.lua
	applyLua string
	//go:embed read.lua
	readLua string

	applyScript = redis.NewScript(applyLua)
	readScript  = redis.NewScript(readLua)
)

// generation reads and writes the records of one layout generation. It
// knows nothing of which generation is active: Store routes to it.
type generation struct {
	rdb redis.UniversalClient
	dur Durability
	names
}

func newGeneration(rdb redis.UniversalClient, opts Options, gen string) *generation {
	return &generation{rdb: rdb, dur: opts.Durability, names: names{opts: opts, gen: gen}}
}

// applyCall is one apply script call: the buckets of one slot group.
type applyCall struct {
	keys []string // the group's marker, then its buckets
	args []any
}

// group is the part of a batch that falls in one slot group: one script
// call.
type group struct {
	marker string
	keys   []string // buckets
	keyIdx map[string]int
	// fields of the group, in the order first seen
	fields []groupField
	index  map[location]int
}

type groupField struct {
	bucket int // index into keys
	field  string
	rec    suppression.Record
	slots  []int // for reads: positions in the caller's keys
}

type batch struct {
	groups map[uint32]*group
	order  []uint32
}

func (g *generation) split(ns string, keys func(yield func(int, suppression.StorageKey))) *batch {
	b := &batch{groups: map[uint32]*group{}}
	keys(func(i int, sk suppression.StorageKey) {
		loc := g.locate(ns, sk)
		grp, ok := b.groups[loc.group]
		if !ok {
			grp = &group{marker: g.marker(loc.group), keyIdx: map[string]int{}, index: map[location]int{}}
			b.groups[loc.group] = grp
			b.order = append(b.order, loc.group)
		}
		fi, ok := grp.index[loc]
		if !ok {
			ki, ok := grp.keyIdx[loc.bucket]
			if !ok {
				ki = len(grp.keys)
				grp.keyIdx[loc.bucket] = ki
				grp.keys = append(grp.keys, loc.bucket)
			}
			fi = len(grp.fields)
			grp.index[loc] = fi
			grp.fields = append(grp.fields, groupField{bucket: ki, field: loc.field})
		}
		grp.fields[fi].slots = append(grp.fields[fi].slots, i)
	})
	return b
}

// applyItem is where one write goes, for sorting a batch by bucket and
// field, and where its field and change are encoded.
type applyItem struct {
	order uint64 // namespace, bucket and the field's first bytes: the sort key
	write int32  // index into the writes
	at    int32  // offset of the field in the call buffer; the change follows it
	end   int32  // end of the change
}

// compareItems orders items by namespace, bucket and field. buf holds the
// fields.
func compareItems(buf []byte, a, b applyItem) int {
	if c := cmp.Compare(a.order, b.order); c != 0 {
		return c
	}
	return bytes.Compare(buf[a.at+4:a.at+fieldLen], buf[b.at+4:b.at+fieldLen])
}

// apply folds writes into the generation; see suppression.Store.Apply.
func (g *generation) apply(ctx context.Context, writes []suppression.Write) (int, error) {
	if len(writes) == 0 {
		return 0, nil
	}
	calls, err := g.applyCalls(writes)
	if err != nil {
		return 0, err
	}
	run := func() (int, error) {
		if !g.dur.accepted() {
			return g.applyDurably(ctx, calls)
		}
		cmds := make([]*redis.Cmd, 0, len(calls))
		_, err := g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
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
		return changed, err
	}
	changed, err := g.withScripts(ctx, run)
	if err != nil {
		return 0, g.wrap(fmt.Sprintf("apply %d writes", len(writes)), err)
	}
	return changed, nil
}

// applyCalls turns a batch into apply.lua calls, one per namespace and
// slot group. The batch's changes are folded per record in Go first, so
// the script gets one reduced state per field and a new field is a plain
// HSETNX. Writes are sorted by bucket and field: the script then works on
// one bucket's listpack at a time, and a record's writes are neighbours.
func (g *generation) applyCalls(writes []suppression.Write) ([]applyCall, error) {
	if len(writes) > math.MaxInt32 {
		return nil, fmt.Errorf("a batch of %d writes", len(writes))
	}
	var namespaces []string
	items := make([]applyItem, len(writes))
	// One buffer holds every field and change the calls send, encoded in
	// the writes' order (reading them once, in order).
	buf := make([]byte, 0, len(writes)*(fieldLen+48))
	for i := range writes {
		w := &writes[i]
		ns := slices.Index(namespaces, w.Namespace) // a batch has one namespace, or a few
		if ns < 0 {
			if err := suppression.CheckName(w.Namespace); err != nil {
				return nil, fmt.Errorf("namespace: %w", err)
			}
			if len(namespaces) == 255 {
				return nil, fmt.Errorf("a batch of more than 255 namespaces")
			}
			ns = len(namespaces)
			namespaces = append(namespaces, w.Namespace)
		}
		at := len(buf)
		buf = append(buf, w.Key[fieldStart:fieldEnd]...)
		buf = append(buf, recordFormat)
		c := &w.Change
		var err error
		buf, err = appendEntry(buf, w.Scope, suppression.Register{Action: c.Action, Reason: c.Reason, Stamp: c.Stamp, Origin: c.Origin, Source: c.Source})
		if err != nil {
			return nil, fmt.Errorf("encode change: %w", err)
		}
		items[i] = applyItem{
			order: uint64(ns)<<56 | uint64(g.bucketOf(w.Key))<<32 | uint64(binary.BigEndian.Uint32(w.Key[fieldStart:])),
			write: int32(i), at: int32(at), end: int32(len(buf)),
		}
	}
	slices.SortFunc(items, func(a, b applyItem) int { return compareItems(buf, a, b) })

	var (
		calls  []applyCall
		call   *applyCall
		group  uint32
		bucket uint32
	)
	for i := 0; i < len(items); {
		it := items[i]
		ns, b := int(it.order>>56), g.bucketOf(writes[it.write].Key)
		if grp := g.groupOf(b); call == nil || ns != int(items[i-1].order>>56) || grp != group {
			group = grp
			calls = append(calls, applyCall{keys: []string{g.marker(grp)}, args: make([]any, 0, 64)})
			call = &calls[len(calls)-1]
		}
		if len(call.keys) == 1 || b != bucket {
			bucket = b
			call.keys = append(call.keys, g.bucket(namespaces[ns], b))
		}
		j := i + 1
		for j < len(items) && compareItems(buf, items[j], it) == 0 {
			j++
		}
		field, change, n := buf[it.at:it.at+fieldLen:it.at+fieldLen], buf[it.at+fieldLen:it.end:it.end], 1
		if j > i+1 { // several writes to one record: fold them
			rec := suppression.Record{}
			for _, o := range items[i:j] {
				w := &writes[o.write]
				rec[w.Scope], _ = rec[w.Scope].Apply(w.Change)
			}
			entries, m, err := encodeEntries(rec)
			if err != nil {
				return nil, fmt.Errorf("encode change: %w", err)
			}
			change, n = append([]byte{recordFormat}, entries...), m
		}
		call.args = append(call.args, len(call.keys), field, change, n)
		i = j
	}
	return calls, nil
}

// get reads records; see suppression.Store.Get.
func (g *generation) get(ctx context.Context, ns string, keys []suppression.StorageKey) ([]suppression.Record, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	b := g.split(ns, func(yield func(int, suppression.StorageKey)) {
		for i, k := range keys {
			yield(i, k)
		}
	})
	calls := make([]readCall, 0, len(b.order))
	for _, gn := range b.order {
		calls = append(calls, readCall{grp: b.groups[gn]})
	}
	// Each group is read in one atomic step, in the group's slot: the
	// marker's EXISTS and the buckets' HMGETs see the same instant. A
	// missing marker means the data is gone, not that nobody is
	// suppressed. A transaction per group on a single server (fast, native
	// on miniredis too); on a cluster, where a pipeline of transactions
	// cannot be routed by slot, read.lua, one call per group.
	reads := make([]groupRead, len(calls))
	var err error
	if _, cluster := g.rdb.(*redis.ClusterClient); cluster {
		err = g.readScripted(ctx, calls, reads)
	} else {
		err = g.readTransaction(ctx, calls, reads)
	}
	if err != nil {
		return nil, g.wrap(fmt.Sprintf("read %d keys", len(keys)), err)
	}
	out := make([]suppression.Record, len(keys))
	for ci, c := range calls {
		if !reads[ci].present {
			return nil, g.wrap(fmt.Sprintf("read %d keys", len(keys)), fmt.Errorf("NOTBUILT marker %s is missing", c.grp.marker))
		}
		// Values come back bucket by bucket, each bucket's fields in the
		// order they were listed.
		perBucket := make([][]int, len(c.grp.keys))
		for fi, f := range c.grp.fields {
			perBucket[f.bucket] = append(perBucket[f.bucket], fi)
		}
		for bi, fis := range perBucket {
			vals := reads[ci].buckets[bi]
			for j, fi := range fis {
				s, ok := vals[j].(string)
				if !ok {
					continue
				}
				rec, err := decodeRecord([]byte(s))
				if err != nil {
					return nil, fmt.Errorf("bucket %s: %w", c.grp.keys[bi], err)
				}
				for _, slot := range c.grp.fields[fi].slots {
					out[slot] = rec
				}
			}
		}
	}
	return out, nil
}

type readCall struct{ grp *group }

// fieldsByBucket lists the group's fields per bucket, in bucket order.
func (grp *group) fieldsByBucket() [][]string {
	out := make([][]string, len(grp.keys))
	for _, f := range grp.fields {
		out[f.bucket] = append(out[f.bucket], f.field)
	}
	return out
}

// groupRead is what one group's read returned.
type groupRead struct {
	present bool    // the marker exists
	buckets [][]any // per bucket, the values of its fields in the order listed
}

// readScripted reads every group with read.lua, pipelined (the cluster
// client routes each call by its keys' slot), and splits the values per
// bucket.
func (g *generation) readScripted(ctx context.Context, calls []readCall, reads []groupRead) error {
	type scripted struct {
		keys []string
		args []any
		n    []int // fields per bucket
	}
	sc := make([]scripted, len(calls))
	for i, c := range calls {
		sc[i].keys = append([]string{c.grp.marker}, c.grp.keys...)
		for bi, fs := range c.grp.fieldsByBucket() {
			sc[i].args = append(sc[i].args, bi+2, len(fs))
			for _, f := range fs {
				sc[i].args = append(sc[i].args, f)
			}
			sc[i].n = append(sc[i].n, len(fs))
		}
	}
	cmds := make([]*redis.Cmd, len(calls))
	_, err := g.withScripts(ctx, func() (int, error) {
		_, err := g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := range sc {
				cmds[i] = readScript.EvalSha(ctx, p, sc[i].keys, sc[i].args...)
			}
			return nil
		})
		return 0, err
	})
	if err != nil && !isNotBuilt(err) {
		return err
	}
	for i, c := range cmds {
		vals, err := c.Slice()
		if isNotBuilt(err) {
			continue // not present
		}
		if err != nil {
			return err
		}
		reads[i].present = true
		for _, n := range sc[i].n {
			if len(vals) < n {
				return fmt.Errorf("read.lua answered %d values, want more", len(vals))
			}
			reads[i].buckets = append(reads[i].buckets, vals[:n])
			vals = vals[n:]
		}
	}
	return nil
}

// readTransaction reads every group in a transaction of its own (MULTI,
// the marker's EXISTS, the buckets' HMGETs, EXEC), all pipelined.
func (g *generation) readTransaction(ctx context.Context, calls []readCall, reads []groupRead) error {
	exists := make([]*redis.IntCmd, len(calls))
	values := make([][]*redis.SliceCmd, len(calls))
	_, err := g.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range calls {
			exists[i] = p.Exists(ctx, c.grp.marker)
			for bi, fs := range c.grp.fieldsByBucket() {
				values[i] = append(values[i], p.HMGet(ctx, c.grp.keys[bi], fs...))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := range calls {
		reads[i].present = exists[i].Val() == 1
		for _, v := range values[i] {
			reads[i].buckets = append(reads[i].buckets, v.Val())
		}
	}
	return nil
}

// withScripts runs f, and once more after loading the scripts if a
// restarted or failed-over server lost its script cache (the work is
// idempotent).
func (g *generation) withScripts(ctx context.Context, f func() (int, error)) (int, error) {
	n, err := f()
	if err != nil && isNoScript(err) {
		if lerr := loadScripts(ctx, g.rdb); lerr != nil {
			return 0, fmt.Errorf("load scripts: %w", lerr)
		}
		n, err = f()
	}
	return n, err
}

func isNoScript(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") }

func isNotBuilt(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOTBUILT") }

func loadScripts(ctx context.Context, rdb redis.UniversalClient) error {
	load := func(ctx context.Context, c redis.Scripter) error {
		for _, s := range []*redis.Script{applyScript, readScript} {
			if err := s.Load(ctx, c).Err(); err != nil {
				return err
			}
		}
		return nil
	}
	if c, ok := rdb.(*redis.ClusterClient); ok {
		return c.ForEachShard(ctx, func(ctx context.Context, shard *redis.Client) error { return load(ctx, shard) })
	}
	return load(ctx, rdb)
}

// wrap classifies a Redis error for the contract: a missing marker is
// ErrNotBuilt, anything else from the server or the network ErrUnavailable.
func (g *generation) wrap(what string, err error) error {
	if isNotBuilt(err) {
		return fmt.Errorf("%w: generation %s: %s: %s (the server lost its data or the generation was never built; it is rebuilt from Kafka)",
			suppression.ErrNotBuilt, g.gen, what, strings.TrimPrefix(err.Error(), "NOTBUILT "))
	}
	if errors.Is(err, suppression.ErrUnavailable) {
		return err
	}
	if errors.Is(err, errNotDurable) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%w: %s: %w", suppression.ErrUnavailable, what, err)
}

// missingMarkers returns how many of the generation's group markers are
// missing (0: the whole generation is present).
func (g *generation) missingMarkers(ctx context.Context) (int, error) {
	cmds := make([]*redis.IntCmd, g.groups())
	_, err := g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range cmds {
			cmds[i] = p.Exists(ctx, g.marker(uint32(i)))
		}
		return nil
	})
	if err != nil {
		return 0, g.wrap("check markers", err)
	}
	missing := 0
	for _, c := range cmds {
		if c.Val() == 0 {
			missing++
		}
	}
	return missing, nil
}

// writeMarkers writes every group's marker: the generation is present.
func (g *generation) writeMarkers(ctx context.Context) error {
	_, err := g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range g.groups() {
			p.Set(ctx, g.marker(i), g.gen, 0)
		}
		return nil
	})
	if err != nil {
		return g.wrap("write markers", err)
	}
	return nil
}
