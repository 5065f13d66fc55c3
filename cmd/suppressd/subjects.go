package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/suppressd/suppressd/consumer"
	"github.com/suppressd/suppressd/ledger"
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
	readsConfig(fs)
	var emails, phones, userIDs multiFlag
	fs.Var(&emails, "email", "an email address (repeatable)")
	fs.Var(&phones, "phone", "a phone number (repeatable)")
	fs.Var(&userIDs, "user-id", "a customer id (repeatable)")
	namespace := fs.String("namespace", suppression.DefaultNamespace, "namespace")
	asJSON := fs.Bool("json", false, `print one JSON object: {"namespace", "keys", "events", "state"}`)
	if err := parseFlags(fs, args); err != nil {
		return err
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
	// The ledger is the audit trail: a person's records are found by their
	// storage keys, and still there after the intake topics' retention
	// removed the raw events.
	sks := s.keyer.StorageKeys(nil, keys)
	var history []subjectEvent
	err = consumer.ReadLedger(ctx, s.Kafka, s.Topics.Ledger, func(msg kafka.Message, rec ledger.Record, err error) error {
		if err != nil || rec.Namespace != *namespace {
			return nil
		}
		var matched []string
		for i, k := range sks {
			if slices.Contains(rec.Keys, k) {
				matched = append(matched, keys[i].String())
			}
		}
		if len(matched) == 0 {
			return nil
		}
		history = append(history, subjectEvent{
			At: rec.OccurredAt.UTC().Format(time.RFC3339Nano), Type: string(rec.Type), Scopes: scopeStrings(rec.Scopes),
			Reason: string(rec.Reason), Origin: string(rec.Origin), Source: rec.Source, ID: rec.ID,
			Keys: matched, Topic: msg.Topic, Partition: msg.Partition, Offset: msg.Offset, at: rec.OccurredAt,
		})
		return nil
	})
	if err != nil {
		return err
	}
	sort.SliceStable(history, func(i, j int) bool { return history[i].at.Before(history[j].at) })
	recs, err := d.store.Get(ctx, *namespace, sks)
	if err != nil {
		return err
	}
	doc := subjectsJSON{Namespace: *namespace, Keys: make([]string, len(keys)), Events: history, State: []subjectKey{}}
	for i, k := range keys {
		doc.Keys[i] = k.String()
	}
	if doc.Events == nil {
		doc.Events = []subjectEvent{}
	}
	for i, rec := range recs {
		sk := subjectKey{Key: keys[i].String(), Scopes: []subjectScope{}}
		for _, scope := range rec.Scopes() {
			st := rec[scope]
			ss := subjectScope{Scope: string(scope), Suppressed: st.Suppressed(), Registers: make([]exportRegister, len(st))}
			for j, r := range st {
				ss.Registers[j] = newExportRegister(r)
			}
			sk.Scopes = append(sk.Scopes, ss)
		}
		if len(sk.Scopes) > 0 {
			doc.State = append(doc.State, sk)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(io.out)
		enc.SetIndent("", "  ")
		return enc.Encode(doc)
	}

	fmt.Fprintf(io.out, "events naming %d match keys in namespace %s: %d\n", len(keys), *namespace, len(history))
	for _, e := range history {
		line := fmt.Sprintf("%s  %-18s scopes=%s", e.at.UTC().Format(time.RFC3339), e.Type, strings.Join(e.Scopes, ","))
		if e.Reason != "" {
			line += " reason=" + e.Reason
		}
		line += fmt.Sprintf(" origin=%s source=%s id=%s keys=%s (%s[%d]@%d)", e.Origin, e.Source, e.ID,
			strings.Join(e.Keys, ","), e.Topic, e.Partition, e.Offset)
		fmt.Fprintln(io.out, "  "+line)
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

// subjectsJSON is `suppressd subjects --json`: the person's match keys,
// the events naming them, oldest first, and the state held now. Like the
// text, it holds no identifier: keys are match-key prefixes
// ("email:1a2b3c4d"), as in the API's subject lookup.
type subjectsJSON struct {
	Namespace string         `json:"namespace"`
	Keys      []string       `json:"keys"`
	Events    []subjectEvent `json:"events"`
	// State lists the keys that hold anything, with the scopes they
	// hold, in the shape of the API's subject lookup.
	State []subjectKey `json:"state"`
}

type subjectEvent struct {
	// At is when the person acted (the event's time).
	At     string   `json:"at"`
	Type   string   `json:"type"`
	Scopes []string `json:"scopes"`
	Reason string   `json:"reason,omitempty"`
	Origin string   `json:"origin"`
	Source string   `json:"source"`
	ID     string   `json:"id"`
	// Keys are the person's match keys the event names.
	Keys []string `json:"keys"`
	// Topic, Partition and Offset say where the event is on Kafka.
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	Offset    int64  `json:"offset"`

	at time.Time
}

type subjectKey struct {
	Key    string         `json:"key"`
	Scopes []subjectScope `json:"scopes"`
}

type subjectScope struct {
	Scope      string           `json:"scope"`
	Suppressed bool             `json:"suppressed"`
	Registers  []exportRegister `json:"registers"`
}

func scopeStrings(ss []suppression.Scope) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return out
}
