package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/suppressd/suppressd/schemas"
	"github.com/suppressd/suppressd/suppression"
)

// runSubjects answers the access right from the audit trail: every event on
// the topics that names one of a person's match keys, oldest first, and the
// state the store holds now. Kafka is the audit trail, so this reads every
// topic from its first offset: an operator's tool, not a hot path. Nothing
// raw is printed: identifiers show as match-key prefixes.
func runSubjects(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("subjects", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var emails, phones, userIDs multiFlag
	fs.Var(&emails, "email", "an email address (repeatable)")
	fs.Var(&phones, "phone", "a phone number (repeatable)")
	fs.Var(&userIDs, "user-id", "a customer id (repeatable)")
	namespace := fs.String("namespace", suppression.DefaultNamespace, "namespace")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	var ids []suppression.Identifier
	for _, g := range []struct {
		t  suppression.IDType
		vs multiFlag
	}{{suppression.IDEmail, emails}, {suppression.IDPhone, phones}, {suppression.IDUserID, userIDs}} {
		for _, v := range g.vs {
			ids = append(ids, suppression.Identifier{Type: g.t, Value: v})
		}
	}
	if len(ids) == 0 {
		return usageError{errors.New("name the person: --email, --phone or --user-id")}
	}
	cfg, d, err := openDeps()
	if err != nil {
		return err
	}
	defer d.close()
	keys, err := d.normalizer.ExpandAll(ids)
	if err != nil {
		return usageError{err}
	}
	v, err := schemas.New()
	if err != nil {
		return err
	}
	dialer, err := cfg.Kafka.Dialer()
	if err != nil {
		return err
	}
	ends, err := endOffsets(ctx, cfg)
	if err != nil {
		return err
	}
	type found struct {
		at   time.Time
		line string
	}
	var history []found
	for _, pr := range ends {
		if pr.end <= pr.start {
			continue
		}
		err := readPartition(ctx, cfg, dialer, pr, func(msg kafka.Message) error {
			dec, err := v.Decode(msg.Value, msg.Time, d.normalizer)
			if err != nil || dec.Event.Namespace != *namespace {
				return nil
			}
			var matched []string
			for _, k := range dec.Keys {
				if slices.Contains(keys, k) {
					matched = append(matched, k.String())
				}
			}
			if len(matched) == 0 {
				return nil
			}
			e := dec.Event
			line := fmt.Sprintf("%s  %-18s scopes=%s", e.OccurredAt.UTC().Format(time.RFC3339), e.Type, joinScopes(e.Scopes))
			if e.Reason != "" {
				line += " reason=" + string(e.Reason)
			}
			line += fmt.Sprintf(" origin=%s source=%s id=%s keys=%s (%s[%d]@%d)", e.Origin, e.Source, e.ID,
				strings.Join(matched, ","), msg.Topic, msg.Partition, msg.Offset)
			if e.Justification != "" {
				line += fmt.Sprintf(" justification=%q", e.Justification)
			}
			history = append(history, found{at: e.OccurredAt, line: line})
			return nil
		})
		if err != nil {
			return fmt.Errorf("read %s[%d]: %w", pr.topic, pr.partition, err)
		}
	}
	sort.SliceStable(history, func(i, j int) bool { return history[i].at.Before(history[j].at) })
	fmt.Fprintf(stdout, "events naming %d match keys in namespace %s: %d\n", len(keys), *namespace, len(history))
	for _, h := range history {
		fmt.Fprintln(stdout, "  "+h.line)
	}
	recs, err := d.store.Get(ctx, *namespace, keys)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "state held now:")
	for i, rec := range recs {
		for _, scope := range sortedScopeNames(rec) {
			st := rec[suppression.Scope(scope)]
			state := "allowed"
			if st.Suppressed() {
				state = "suppressed"
			}
			fmt.Fprintf(stdout, "  %s %s: %s", keys[i], scope, state)
			for _, r := range st {
				fmt.Fprintf(stdout, " [%s %s %s %s]", r.Action, r.Reason, r.Origin, r.Stamp.Time().Format(time.RFC3339))
			}
			fmt.Fprintln(stdout)
		}
	}
	return nil
}

func joinScopes(ss []suppression.Scope) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = string(s)
	}
	return strings.Join(parts, ",")
}

func sortedScopeNames[M ~map[suppression.Scope]V, V any](m M) []string {
	out := make([]string, 0, len(m))
	for s := range m {
		out = append(out, string(s))
	}
	sort.Strings(out)
	return out
}
