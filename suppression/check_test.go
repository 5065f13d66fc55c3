package suppression

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func held(scope Scope, cs ...Change) Record { return Record{scope: applyAll(cs)} }

func TestDecide(t *testing.T) {
	marketingEmail := Send{Channel: ChannelEmail, Purpose: PurposeMarketing, Topic: "newsletter"}
	receipt := Send{Channel: ChannelEmail, Purpose: PurposeTransactional}
	adUpload := Send{Channel: ChannelAds, Purpose: PurposeAdvertising}
	tests := []struct {
		name    string
		send    Send
		records []Record
		want    *Match
	}{
		{"nothing held", marketingEmail, nil, nil},
		{"global unsubscribe blocks marketing", marketingEmail, []Record{held(ScopeGlobal, sup(1000, 1, ReasonUnsubscribe))},
			&Match{Scope: ScopeGlobal, Reason: ReasonUnsubscribe}},
		{"topic unsubscribe blocks that topic", marketingEmail, []Record{held("topic:newsletter", sup(1000, 1, ReasonUnsubscribe))},
			&Match{Scope: "topic:newsletter", Reason: ReasonUnsubscribe}},
		{"other topic does not block", marketingEmail, []Record{held("topic:offers", sup(1000, 1, ReasonUnsubscribe))}, nil},
		{"sms opt-out does not block email", marketingEmail, []Record{held("sms", sup(1000, 1, ReasonUnsubscribe))}, nil},
		{"purpose opt-out blocks", marketingEmail, []Record{held("marketing", sup(1000, 1, ReasonObjection))},
			&Match{Scope: "marketing", Reason: ReasonObjection}},
		{"lifted suppression does not block", marketingEmail, []Record{held("email", sup(1000, 1, ReasonUnsubscribe), lift(2000, 2, ""))}, nil},
		{"transactional ignores unsubscribe", receipt, []Record{held(ScopeGlobal, sup(1000, 1, ReasonUnsubscribe))}, nil},
		{"transactional ignores consent withdrawal", receipt, []Record{held("email", sup(1000, 1, ReasonConsentWithdrawn))}, nil},
		{"transactional blocked by hard bounce", receipt, []Record{held("email", sup(1000, 1, ReasonHardBounce))},
			&Match{Scope: "email", Reason: ReasonHardBounce}},
		{"transactional blocked by erasure", receipt, []Record{held(ScopeGlobal, sup(1000, 1, ReasonErasure))},
			&Match{Scope: ScopeGlobal, Reason: ReasonErasure}},
		{"transactional blocked by complaint", receipt, []Record{held("email", sup(1000, 1, ReasonComplaint))},
			&Match{Scope: "email", Reason: ReasonComplaint}},
		{"transactional ignores marketing-purpose erasure scope", receipt, []Record{held("marketing", sup(1000, 1, ReasonErasure))}, nil},
		{"gpc blocks ad upload", adUpload, []Record{held("advertising", sup(1000, 1, ReasonGPC))},
			&Match{Scope: "advertising", Reason: ReasonGPC}},
		{"strongest reason wins across keys", marketingEmail, []Record{
			held("topic:newsletter", sup(1000, 1, ReasonUnsubscribe)),
			held(ScopeGlobal, sup(3000, 2, ReasonErasure)),
		}, &Match{Scope: ScopeGlobal, Reason: ReasonErasure}},
		{"same reason: broadest scope wins", marketingEmail, []Record{
			held("topic:newsletter", sup(1000, 1, ReasonUnsubscribe)),
			held("email", sup(3000, 2, ReasonUnsubscribe)),
		}, &Match{Scope: "email", Reason: ReasonUnsubscribe}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, tc.send.Validate())
			got, ok := Decide(tc.send, tc.records)
			if tc.want == nil {
				require.False(t, ok, "got %+v", got)
				return
			}
			require.True(t, ok)
			require.Equal(t, tc.want.Scope, got.Scope)
			require.Equal(t, tc.want.Reason, got.Reason)
			require.False(t, got.Since.IsZero())
		})
	}
}

func TestDecideReportsSince(t *testing.T) {
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	m, ok := Decide(Send{Channel: ChannelSMS, Purpose: PurposeMarketing},
		[]Record{held("sms", sup(at.UnixMilli(), 1, ReasonUnsubscribe))})
	require.True(t, ok)
	require.Equal(t, at, m.Since)
	require.Equal(t, OriginRecipient, m.Origin)
}

func TestSendValidate(t *testing.T) {
	require.ErrorContains(t, Send{Channel: "fax", Purpose: PurposeMarketing}.Validate(), `channel: unknown channel "fax"`)
	require.ErrorContains(t, Send{Channel: ChannelEmail, Purpose: "spam"}.Validate(), `purpose: unknown purpose "spam"`)
	require.ErrorContains(t, Send{Channel: ChannelEmail, Purpose: PurposeMarketing, Topic: "Bad Topic"}.Validate(), "topic: name")
}

func TestParseScope(t *testing.T) {
	for _, ok := range []string{"*", "email", "sms", "push", "ads", "marketing", "advertising", "profiling", "sale_sharing", "topic:newsletter", "topic:a.b-c_1"} {
		s, err := ParseScope(ok)
		require.NoError(t, err, ok)
		require.Equal(t, Scope(ok), s)
	}
	for _, bad := range []string{"", "transactional", "Email", "topic:", "topic:UPPER", "topic:-x", "global"} {
		_, err := ParseScope(bad)
		require.Error(t, err, bad)
	}
}
