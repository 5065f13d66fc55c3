package kafkaconn

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// GroupReader is a consumer group reader whose members leave the group for
// sure, so a broker restart costs its stage a few seconds, not the
// session timeout.
//
// Why: kafka-go's consumer group (consumergroup.go, ConsumerGroup.run)
// keeps its member id only across clean generations. On any other error
// (the coordinator out of reach included) it sends LeaveGroup for the
// member and clears the id, so the next JoinGroup makes a new member.
// When the broker itself died, that LeaveGroup cannot reach it and is not
// retried; the restarted coordinator loads the group with the old member
// still in it, and the new member's join waits until the old member's
// session times out (SUPPRESSD_CONSUMER_SESSION_TIMEOUT, 30s by default).
// kafka-go cannot keep the member either: its group protocol is JoinGroup
// v1-v2, without KIP-345's static membership (group.instance.id, JoinGroup
// v5+; segmentio/kafka-go#939 is open).
//
// So GroupReader finishes what kafka-go began: it watches kafka-go's log
// for the leaves it starts ("Leaving group %s, member %s", logged before
// every LeaveGroup) and sends the same LeaveGroup again, through the
// group's coordinator, until the broker answers it. A member kafka-go
// leaves is never used again, so the repeated leave is safe; when
// kafka-go's own leave went through, the broker answers "unknown member"
// and nothing changes.
type GroupReader struct {
	*kafka.Reader

	group   string
	session time.Duration // the members' session timeout
	client  *kafka.Client
	log     *slog.Logger

	mu      sync.Mutex
	pending []*pendingLeave // members kafka-go left, oldest first
	wake    chan struct{}   // a member was added to pending
	stop    context.CancelFunc
	done    chan struct{}
}

// pendingLeave is a member kafka-go left and the broker has not yet taken
// out of the group.
type pendingLeave struct {
	member string
	// refused is when the broker (or kafka-go's transport on its behalf)
	// first answered the leave with an error other than "gone".
	refused time.Time
}

// leavingFormat is the line kafka-go's ConsumerGroup.leaveGroup logs, with
// the group id and the member id, before it sends LeaveGroup.
const leavingFormat = "Leaving group %s, member %s"

// maxPendingLeaves bounds what is kept to retry: a reader that could not
// leave more members than this in one outage has been rejoining in a loop,
// and its oldest members have long timed out.
const maxPendingLeaves = 16

// GroupReader returns a consumer group reader of cfg (its GroupID set),
// with cfg.Logger taken over to learn which members kafka-go leaves. Its
// Close closes the reader (kafka-go leaves the group) and makes a last
// attempt, of at most a few seconds, at any leave the broker has not
// answered.
func (c Config) GroupReader(cfg kafka.ReaderConfig, log *slog.Logger) (*GroupReader, error) {
	if cfg.GroupID == "" {
		return nil, errors.New("kafkaconn: GroupReader needs a GroupID")
	}
	transport, err := c.Transport()
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	session := cfg.SessionTimeout
	if session <= 0 {
		session = 30 * time.Second // kafka-go's default
	}
	r := &GroupReader{
		group:   cfg.GroupID,
		session: session,
		client:  &kafka.Client{Addr: kafka.TCP(c.Brokers...), Transport: transport, Timeout: 5 * time.Second},
		log:     log.With("component", "kafka-group", "group", cfg.GroupID),
		wake:    make(chan struct{}, 1),
		stop:    stop,
		done:    make(chan struct{}),
	}
	cfg.Logger = kafka.LoggerFunc(r.kafkaLog)
	r.Reader = kafka.NewReader(cfg)
	go r.run(ctx)
	return r, nil
}

// kafkaLog receives kafka-go's informational log lines and keeps the
// member of each leave it starts.
func (r *GroupReader) kafkaLog(format string, args ...any) {
	if format != leavingFormat || len(args) != 2 {
		return
	}
	group, _ := args[0].(string)
	member, _ := args[1].(string)
	if group != r.group || member == "" {
		return
	}
	r.log.Debug("kafka-go leaves the group; the leave is sent until the broker answers it", "member", member)
	r.mu.Lock()
	r.pending = append(r.pending, &pendingLeave{member: member})
	if len(r.pending) > maxPendingLeaves {
		r.pending = r.pending[len(r.pending)-maxPendingLeaves:]
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Close closes the reader, whose consumer group leaves, then stops
// retrying leaves after a last attempt.
func (r *GroupReader) Close() error {
	err := r.Reader.Close()
	r.stop()
	<-r.done
	return err
}

// run sends the pending leaves until the broker answers each, every
// retryEvery while it cannot.
func (r *GroupReader) run(ctx context.Context) {
	defer close(r.done)
	const retryEvery = 500 * time.Millisecond
	for {
		r.leavePending(ctx)
		r.mu.Lock()
		idle := len(r.pending) == 0
		r.mu.Unlock()
		var retry <-chan time.Time
		if !idle {
			retry = time.After(retryEvery)
		}
		select {
		case <-ctx.Done():
			// Closing: kafka-go has just left; a broker out of reach
			// gets a few seconds more, not a hung shutdown.
			lctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			for r.leavePending(lctx) && lctx.Err() == nil {
				select {
				case <-lctx.Done():
				case <-time.After(retryEvery):
				}
			}
			cancel()
			return
		case <-r.wake:
		case <-retry:
		}
	}
}

// leavePending tries each pending leave once and reports whether any is
// left to retry.
func (r *GroupReader) leavePending(ctx context.Context) bool {
	r.mu.Lock()
	members := append([]*pendingLeave(nil), r.pending...)
	r.mu.Unlock()
	finished := map[*pendingLeave]bool{}
	for _, p := range members {
		if ctx.Err() == nil && !r.leave(ctx, p) {
			finished[p] = true
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// Members may have been added meanwhile: keep all but the finished.
	keep := r.pending[:0]
	for _, m := range r.pending {
		if !finished[m] {
			keep = append(keep, m)
		}
	}
	r.pending = keep
	return len(r.pending) > 0
}

// leave sends LeaveGroup for p's member and reports whether to try again.
func (r *GroupReader) leave(ctx context.Context, p *pendingLeave) (retry bool) {
	member := p.member
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := r.client.LeaveGroup(lctx, &kafka.LeaveGroupRequest{
		GroupID: r.group, Members: []kafka.LeaveGroupRequestMember{{ID: member}},
	})
	if err == nil {
		err = resp.Error
		for _, m := range resp.Members {
			if err == nil && m.ID == member {
				err = m.Error
			}
		}
	}
	var kerr kafka.Error
	switch {
	case err == nil:
		r.log.Info("left the group for a member that could not leave when the broker was out of reach; the group rebalances now, not after the session timeout", "member", member)
		return false
	case errors.Is(err, kafka.UnknownMemberId), errors.Is(err, kafka.GroupIdNotFound):
		// kafka-go's own leave went through, or the member timed out.
		return false
	case errors.Is(err, kafka.GroupAuthorizationFailed), errors.Is(err, kafka.InvalidGroupId):
		r.log.Warn("the broker refused to take a member out of the group; the group waits for its session to time out", "member", member, "err", err)
		return false
	case errors.As(err, &kerr):
		// The coordinator is moving or loading the group (or the
		// transport has not found it yet): retried, until the member
		// has certainly timed out.
		if p.refused.IsZero() {
			p.refused = time.Now()
		}
		if time.Since(p.refused) > r.session {
			r.log.Warn("could not take a member out of the group; it has timed out by now", "member", member, "err", err)
			return false
		}
		return true
	default:
		// Out of reach: the broker is down, or restarting.
		return true
	}
}
