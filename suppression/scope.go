package suppression

import (
	"fmt"
	"strings"
)

// Scope is what a suppression covers: everything ("*"), one channel, one
// purpose, or one topic (a list or newsletter, "topic:<name>"). Scopes are
// compared as strings; ParseScope returns the canonical spelling.
type Scope string

// ScopeGlobal covers every send on every channel for every purpose.
const ScopeGlobal Scope = "*"

// Channel is the medium of a send.
type Channel string

// Channels a send or a suppression can name.
const (
	ChannelEmail Channel = "email"
	ChannelSMS   Channel = "sms"
	ChannelPush  Channel = "push"
	ChannelAds   Channel = "ads"
)

// Channels lists every channel.
var Channels = []Channel{ChannelEmail, ChannelSMS, ChannelPush, ChannelAds}

// Purpose is why a send is made.
type Purpose string

// Purposes a send or a suppression can name. Transactional is a purpose of
// sends only: nobody opts out of receipts, and only erasure, complaints and
// hard bounces stop them.
const (
	PurposeMarketing     Purpose = "marketing"
	PurposeAdvertising   Purpose = "advertising"
	PurposeProfiling     Purpose = "profiling"
	PurposeSaleSharing   Purpose = "sale_sharing"
	PurposeTransactional Purpose = "transactional"
)

// Purposes lists the purposes a suppression can name.
var Purposes = []Purpose{PurposeMarketing, PurposeAdvertising, PurposeProfiling, PurposeSaleSharing}

const topicPrefix = "topic:"

// MaxNameLen bounds topic and namespace names.
const MaxNameLen = 64

// ChannelScope returns the scope of a whole channel.
func ChannelScope(c Channel) Scope { return Scope(c) }

// PurposeScope returns the scope of a purpose.
func PurposeScope(p Purpose) Scope { return Scope(p) }

// TopicScope returns the scope of a topic; the name must be valid (see
// ParseScope).
func TopicScope(topic string) Scope { return Scope(topicPrefix + topic) }

// ParseChannel checks a channel name.
func ParseChannel(s string) (Channel, error) {
	for _, c := range Channels {
		if string(c) == s {
			return c, nil
		}
	}
	return "", fmt.Errorf("unknown channel %q (want one of %s)", s, joinNames(Channels))
}

// ParsePurpose checks the purpose of a send (transactional included).
func ParsePurpose(s string) (Purpose, error) {
	if s == string(PurposeTransactional) {
		return PurposeTransactional, nil
	}
	for _, p := range Purposes {
		if string(p) == s {
			return p, nil
		}
	}
	return "", fmt.Errorf("unknown purpose %q (want one of %s, %s)", s, joinNames(Purposes), PurposeTransactional)
}

// ParseScope checks a scope: "*", a channel, a purpose other than
// transactional, or "topic:" followed by a name.
func ParseScope(s string) (Scope, error) {
	if s == string(ScopeGlobal) {
		return ScopeGlobal, nil
	}
	if name, ok := strings.CutPrefix(s, topicPrefix); ok {
		if err := CheckName(name); err != nil {
			return "", fmt.Errorf("scope %q: topic %w", s, err)
		}
		return Scope(s), nil
	}
	if _, err := ParseChannel(s); err == nil {
		return Scope(s), nil
	}
	for _, p := range Purposes {
		if string(p) == s {
			return Scope(s), nil
		}
	}
	return "", fmt.Errorf("unknown scope %q (want *, a channel %s, a purpose %s, or topic:<name>)", s, joinNames(Channels), joinNames(Purposes))
}

// Topic returns the topic name of a topic scope.
func (s Scope) Topic() (string, bool) { return strings.CutPrefix(string(s), topicPrefix) }

// DefaultNamespace is used when an event or check names none.
const DefaultNamespace = "default"

// CheckName validates a namespace or topic name: 1 to 64 characters from
// a-z, 0-9, '.', '_' and '-', starting with a letter or digit. Names end up
// in store keys and metric labels, hence the narrow alphabet.
func CheckName(s string) error {
	if s == "" {
		return fmt.Errorf("name is empty")
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("name is longer than %d characters", MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return fmt.Errorf("name %q: only a-z, 0-9, '.', '_' and '-' are allowed, starting with a letter or digit", s)
		}
	}
	return nil
}

func joinNames[T ~string](xs []T) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = string(x)
	}
	return strings.Join(parts, ", ")
}
