package suppression

import (
	"fmt"
	"time"
)

// Send describes a message or upload about to happen.
type Send struct {
	Channel Channel
	Purpose Purpose
	Topic   string // optional list or newsletter
}

// Validate checks the send's fields.
func (s Send) Validate() error {
	if _, err := ParseChannel(string(s.Channel)); err != nil {
		return fmt.Errorf("channel: %w", err)
	}
	if _, err := ParsePurpose(string(s.Purpose)); err != nil {
		return fmt.Errorf("purpose: %w", err)
	}
	if s.Topic != "" {
		if err := CheckName(s.Topic); err != nil {
			return fmt.Errorf("topic: %w", err)
		}
	}
	return nil
}

// Scopes returns the scopes whose suppressions cover the send: everything,
// its channel, its purpose and its topic. A transactional send has no
// suppressible purpose, so only the global, channel and topic scopes apply.
func (s Send) Scopes() []Scope {
	out := make([]Scope, 0, 4)
	out = append(out, ScopeGlobal, ChannelScope(s.Channel))
	if s.Purpose != PurposeTransactional {
		out = append(out, PurposeScope(s.Purpose))
	}
	if s.Topic != "" {
		out = append(out, TopicScope(s.Topic))
	}
	return out
}

// Blocks reports whether a suppression for reason r stops this send.
// Transactional sends are stopped only by erasure, complaints and hard
// bounces.
func (s Send) Blocks(r Reason) bool {
	return s.Purpose != PurposeTransactional || r.BlocksTransactional()
}

// Match is the suppression that stops a send.
type Match struct {
	Scope  Scope
	Reason Reason
	Origin Origin
	Source string
	Since  time.Time // when the person acted
}

// Decide returns the suppression that stops the send, if any, among the
// records of every storage key of a contact (nil records are keys never
// seen). Scopes that do not cover the send are ignored. When several match,
// the answer is the strongest reason (see Reasons), then the broadest scope
// (in the order of Send.Scopes), then the oldest, then the source's name, so
// the same records always give the same answer.
func Decide(send Send, recs []Record) (Match, bool) {
	scopes := send.Scopes()
	var best Match
	bestScope, bestRank := 0, len(Reasons)+1
	found := false
	for _, rec := range recs {
		for si, sc := range scopes {
			st, ok := rec[sc]
			if !ok {
				continue
			}
			for _, r := range st {
				if r.Action != ActionSuppress || !send.Blocks(r.Reason) {
					continue
				}
				rank := r.Reason.rank()
				since := r.Stamp.Time()
				better := !found || rank < bestRank ||
					rank == bestRank && (si < bestScope || si == bestScope && (since.Before(best.Since) ||
						since.Equal(best.Since) && r.Source < best.Source))
				if better {
					best = Match{Scope: sc, Reason: r.Reason, Origin: r.Origin, Source: r.Source, Since: since}
					bestScope, bestRank, found = si, rank, true
				}
			}
		}
	}
	return best, found
}
