package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/suppressd/suppressd/consumer"
	"github.com/suppressd/suppressd/suppression"
)

// runSubjects answers the access right from the audit trail: every event on
// the topics that names one of a person's match keys, oldest first, and the
// state the store holds now. Kafka is the audit trail, so this reads every
// topic from its first offset: an operator's tool, not a hot path. Nothing
// raw is printed: identifiers show as match-key prefixes.
func runSubjects(ctx context.Context, args []string, io stdio) error {
	fs := flag.NewFlagSet("subjects", flag.ContinueOnError)
	fs.SetOutput(io.err)
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
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	}
	s, err := load("")
	if err != nil {
		return err
	}
	keys, err := s.normalizer.Expand(ids...)
	if err != nil {
		return usageError{err}
	}
	d, err := openStore(s)
	if err != nil {
		return err
	}
	defer d.close()
	ends, err := s.Kafka.Ranges(ctx, s.Topics.All())
	if err != nil {
		return err
	}
	type found struct {
		at   time.Time
		line string
	}
	var history []found
	for _, pr := range ends {
		err := s.Kafka.ReadRange(ctx, pr, func(msg kafka.Message) error {
			dec, err := s.validator.Decode(msg.Value, consumer.Reference(msg.Time, time.Now()), s.normalizer)
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
			return err
		}
	}
	sort.SliceStable(history, func(i, j int) bool { return history[i].at.Before(history[j].at) })
	fmt.Fprintf(io.out, "events naming %d match keys in namespace %s: %d\n", len(keys), *namespace, len(history))
	for _, h := range history {
		fmt.Fprintln(io.out, "  "+h.line)
	}
	recs, err := d.store.Get(ctx, *namespace, s.keyer.StorageKeys(nil, keys))
	if err != nil {
		return err
	}
	fmt.Fprintln(io.out, "state held now:")
	for i, rec := range recs {
		for _, scope := range rec.Scopes() {
			st := rec[scope]
			state := "allowed"
			if st.Suppressed() {
				state = "suppressed"
			}
			fmt.Fprintf(io.out, "  %s %s: %s", keys[i], scope, state)
			for _, r := range st {
				fmt.Fprintf(io.out, " [%s %s %s %s]", r.Action, r.Reason, r.Origin, r.Stamp.Time().Format(time.RFC3339))
			}
			fmt.Fprintln(io.out)
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
