package suppression

import "fmt"

// Reason says why a contact is suppressed.
type Reason string

// Reasons for a suppression.
const (
	ReasonUnsubscribe      Reason = "unsubscribe"
	ReasonConsentWithdrawn Reason = "consent_withdrawn"
	ReasonObjection        Reason = "objection"   // GDPR art. 21: to direct marketing or profiling
	ReasonRestriction      Reason = "restriction" // GDPR art. 18: processing restricted until a dispute is settled
	ReasonErasure          Reason = "erasure"
	ReasonComplaint        Reason = "complaint" // a spam report from the mail pipeline
	ReasonHardBounce       Reason = "hard_bounce"
	ReasonGPC              Reason = "gpc" // Global Privacy Control signal
	ReasonMinor            Reason = "minor"
	ReasonAdmin            Reason = "admin"
	ReasonImport           Reason = "import"
)

// Reasons lists every reason, strongest first: when several suppressions
// match a send, the answer names the first of them in this order.
var Reasons = []Reason{
	ReasonErasure, ReasonRestriction, ReasonMinor, ReasonComplaint,
	ReasonHardBounce, ReasonObjection, ReasonConsentWithdrawn,
	ReasonUnsubscribe, ReasonGPC, ReasonAdmin, ReasonImport,
}

// ParseReason checks a reason name.
func ParseReason(s string) (Reason, error) {
	for _, r := range Reasons {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("unknown reason %q (want one of %s)", s, joinNames(Reasons))
}

// Sticky reports whether a suppression for this reason survives a plain
// resubscribe or consent grant. Only an admin unsuppress that names the
// reason lifts it: an erased, restricted or under-age person, or one who
// reported spam, cannot be re-enrolled by a checkbox.
func (r Reason) Sticky() bool {
	switch r {
	case ReasonErasure, ReasonRestriction, ReasonComplaint, ReasonMinor:
		return true
	}
	return false
}

// BlocksTransactional reports whether the reason stops transactional sends
// too (receipts, password resets): nothing may be sent to an erased person,
// one who complained, or an address that hard-bounced.
func (r Reason) BlocksTransactional() bool {
	switch r {
	case ReasonErasure, ReasonComplaint, ReasonHardBounce:
		return true
	}
	return false
}

// rank orders reasons for the answer to a check; lower is stronger.
func (r Reason) rank() int {
	for i, x := range Reasons {
		if x == r {
			return i
		}
	}
	return len(Reasons)
}

// Origin says who acted.
type Origin string

// Origins of an event.
const (
	OriginRecipient Origin = "recipient" // the person themselves (link, preference page, reply)
	OriginCustomer  Origin = "customer"  // the business, on the person's behalf (support agent, DSR tool)
	OriginAdmin     Origin = "admin"     // an operator of suppressd
	OriginSystem    Origin = "system"    // an automated source (mail pipeline, consent platform)
)

// Origins lists every origin.
var Origins = []Origin{OriginRecipient, OriginCustomer, OriginAdmin, OriginSystem}

// ParseOrigin checks an origin name.
func ParseOrigin(s string) (Origin, error) {
	for _, o := range Origins {
		if string(o) == s {
			return o, nil
		}
	}
	return "", fmt.Errorf("unknown origin %q (want one of %s)", s, joinNames(Origins))
}
