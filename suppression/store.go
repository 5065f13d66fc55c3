package suppression

import (
	"context"
	"errors"
	"slices"
)

// Record is everything the store holds for one storage key: the state of
// each scope it has seen.
type Record map[Scope]ScopeState

// Scopes returns the record's scopes in sorted order, for stable output.
func (r Record) Scopes() []Scope {
	out := make([]Scope, 0, len(r))
	for s := range r {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Write is one change to one scope of one storage key in a namespace.
type Write struct {
	Namespace string
	Key       StorageKey
	Scope     Scope
	Change    Change
}

// AppendWrites appends what an event does to the store: its change, for
// every storage key and every scope it names. The event must be normalised.
func AppendWrites(dst []Write, e *Event, keys []StorageKey) []Write {
	ch := e.Change()
	for _, k := range keys {
		for _, s := range e.Scopes {
			dst = append(dst, Write{Namespace: e.Namespace, Key: k, Scope: s, Change: ch})
		}
	}
	return dst
}

// Store is the suppression list: per namespace and storage key, a Record,
// folded from writes by the merge rule (ScopeState.Apply). It is the
// contract between the domain and wherever the list is kept (Redis in
// production, memory in unit tests); the consumer writes through it and the
// API reads through it, neither knowing which store it is.
//
// Concurrency: every method is safe for concurrent use, from any number of
// processes. Apply folds each record atomically (read, merge, write as one),
// so concurrent writers give the same result as any serial order, which by
// the merge rule is the same as every other order.
//
// Failure: a store that cannot answer returns an error wrapping
// ErrUnavailable, never a partial or empty answer that could read as "no
// suppression". A store whose layout differs from the one this process was
// configured with (other key layout, other pepper) returns ErrLayoutMismatch
// from every method, and one whose data was lost (emptied, restarted without
// it, failed over to an empty replica) or never built returns ErrNotBuilt;
// neither answers reads, since both would find nothing and say "allowed".
type Store interface {
	// Apply folds writes in and returns how many registers changed (a
	// duplicate, or an event older than what is held, changes nothing).
	// It is idempotent: re-applying a batch after an error, or replaying
	// history, changes nothing more. A batch is not atomic as a whole:
	// after an error some records may be written and others not, and the
	// caller retries the whole batch. An error wrapping ErrNotDurable means
	// every write was made (readers see it) but is not yet as durable as
	// the store is configured to confirm: the caller may go on, but must
	// not count the batch done (commit it) until an Apply of it succeeds.
	Apply(ctx context.Context, writes []Write) (int, error)

	// Get returns the record of each key in namespace ns, in the order of
	// keys; a key never written gets a nil Record. It sees each record
	// either before or after any one Apply, never half of it. It honours
	// ctx's deadline.
	Get(ctx context.Context, ns string, keys []StorageKey) ([]Record, error)

	// Ready reports whether Get can answer: the store is reachable, its
	// data is present (built, not emptied) and laid out as this process
	// expects. The error says which (errors.Is with ErrUnavailable,
	// ErrNotBuilt or ErrLayoutMismatch) and why, in text safe to show an
	// operator.
	Ready(ctx context.Context) error
}

// Store errors. Implementations wrap them with detail.
var (
	// ErrUnavailable: the store did not answer (down, timed out, failing
	// over). Retry later; nothing can be declared allowed meanwhile.
	ErrUnavailable = errors.New("store unavailable")
	// ErrNotBuilt: the store holds no suppression list to read: never
	// built, or its data was lost. It is rebuilt from the log of record
	// (Kafka); until then it answers nothing.
	ErrNotBuilt = errors.New("store not built")
	// ErrLayoutMismatch: the store was written with another key layout or
	// pepper than this process's; its reads would miss every record.
	ErrLayoutMismatch = errors.New("key layout mismatch")
	// ErrNotDurable: Apply made its writes, but the replicas or disks it is
	// configured to wait for did not confirm them in time.
	ErrNotDurable = errors.New("not durable yet")
)

// StoreErrorReason names a store error for readiness answers and metric
// labels: unavailable, not_built, layout_mismatch, or other.
func StoreErrorReason(err error) string {
	switch {
	case errors.Is(err, ErrLayoutMismatch):
		return "layout_mismatch"
	case errors.Is(err, ErrNotBuilt):
		return "not_built"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	}
	return "other"
}
