package redisstore

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
)

// TestExport lists every (key, scope) of a namespace with its registers, on
// a standalone server and on the cluster, and nothing that names a person.
func TestExport(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n := suppression.Normalizer{}
	for name, rdb := range servers(t) {
		t.Run(name, func(t *testing.T) {
			g := buildStore(t, rdb, Options{Prefix: uniquePrefix(), BucketBits: 12, GroupBits: 4, Keying: "export-test"})
			keyer := suppression.NewKeyer([]byte("export-test-pepper"))
			at := suppression.NewStamp(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), "/import/ses", "id")
			type want struct {
				reason     suppression.Reason
				suppressed bool
			}
			wants := map[string]want{} // "key scope" -> what the export must say
			var writes []suppression.Write
			var raw []string
			for i := range 20 {
				email := fmt.Sprintf("export.person%d@example.org", i)
				raw = append(raw, email)
				keys, err := n.Expand(suppression.Identifier{Type: suppression.IDEmail, Value: email})
				require.NoError(t, err)
				reason := []suppression.Reason{suppression.ReasonHardBounce, suppression.ReasonComplaint, suppression.ReasonUnsubscribe}[i%3]
				for _, k := range keyer.StorageKeys(nil, keys) {
					writes = append(writes, suppression.Write{Namespace: "exp", Key: k, Scope: "email", Change: suppression.Change{
						Action: suppression.ActionSuppress, Reason: reason, Stamp: at, Origin: suppression.OriginSystem, Source: "/import/ses",
					}})
					wants[g.opts.KeyText(k)+" email"] = want{reason, true}
					if i%5 == 0 { // a plain lift in another scope: exported, not suppressed
						writes = append(writes, suppression.Write{Namespace: "exp", Key: k, Scope: "topic:news", Change: suppression.Change{
							Action: suppression.ActionLift, Stamp: at, Origin: suppression.OriginRecipient, Source: "/prefs",
						}})
						wants[g.opts.KeyText(k)+" topic:news"] = want{"", false}
					}
					// Another namespace: not in the export of "exp".
					writes = append(writes, suppression.Write{Namespace: "other", Key: k, Scope: "*", Change: suppression.Change{
						Action: suppression.ActionSuppress, Reason: suppression.ReasonErasure, Stamp: at, Origin: suppression.OriginCustomer, Source: "/dsr",
					}})
				}
			}
			_, err := g.Apply(ctx, writes)
			require.NoError(t, err)

			seen := map[string]want{}
			var dump strings.Builder
			require.NoError(t, g.Export(ctx, "exp", func(k ExportedKey) error {
				require.Equal(t, "exp", k.Namespace)
				fmt.Fprintf(&dump, "%+v\n", k)
				for scope, st := range k.Record {
					id := k.Key() + " " + string(scope)
					require.NotContains(t, seen, id, "each (key, scope) once")
					w := want{suppressed: st.Suppressed()}
					if a := st.Active(); len(a) > 0 {
						w.reason = a[0].Reason
					}
					seen[id] = w
				}
				return nil
			}))
			require.Equal(t, wants, seen)
			for _, email := range raw {
				require.NotContains(t, dump.String(), email)
				require.NotContains(t, dump.String(), strings.Split(email, "@")[0])
			}

			all := 0
			require.NoError(t, g.Export(ctx, "", func(k ExportedKey) error { all++; return nil }))
			require.Equal(t, len(writesKeys(writes)), all) // every record of both namespaces
		})
	}
}

func writesKeys(ws []suppression.Write) map[string]bool {
	out := map[string]bool{}
	for _, w := range ws {
		out[w.Namespace+string(w.Key[:])] = true
	}
	return out
}
