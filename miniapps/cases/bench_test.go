package cases

import (
	"context"
	"database/sql"
	"fmt"
	"testing"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
)

// BenchmarkListInbox lists an office's inbox of 10,000 cases (a quarter
// of them assigned to one agent, spread over the four statuses): the
// first page, a page filtered by status and assignee, and the whole
// inbox page by page.
func BenchmarkListInbox(b *testing.B) {
	for _, engine := range []string{"sqlite", "postgres"} {
		b.Run(engine, func(b *testing.B) {
			d := dbtest.Open(b, engine, Migrations())
			w := &world{d: d}
			s, err := New(Options{DB: d, Orgs: roles{amt + "/" + agentA: "agent"}, Templates: catalogue{}, Announcer: &recorder{}})
			if err != nil {
				b.Fatal(err)
			}
			w.s = s
			fillInbox(b, d, 10000)
			ctx := context.Background()
			b.Run("first-page-100", func(b *testing.B) {
				for b.Loop() {
					if cs, err := s.List(ctx, as(agentA), amt, Filter{}); err != nil || len(cs) != DefaultList {
						b.Fatal(len(cs), err)
					}
				}
			})
			b.Run("filtered-page-100", func(b *testing.B) {
				for b.Loop() {
					if cs, err := s.List(ctx, as(agentA), amt, Filter{Status: StatusInProgress, Assignee: agentA}); err != nil || len(cs) == 0 {
						b.Fatal(len(cs), err)
					}
				}
			})
			b.Run("all-10000-in-pages-of-500", func(b *testing.B) {
				for b.Loop() {
					n, after := 0, ""
					for {
						cs, err := s.List(ctx, as(agentA), amt, Filter{Limit: MaxList, After: after})
						if err != nil {
							b.Fatal(err)
						}
						n += len(cs)
						if len(cs) < MaxList {
							break
						}
						after = cs[len(cs)-1].ID
					}
					if n != 10000 {
						b.Fatalf("listed %d", n)
					}
				}
			})
		})
	}
}

// fillInbox writes n cases of org amt in one transaction.
func fillInbox(b *testing.B, d *db.DB, n int) {
	statuses := []string{StatusReceived, StatusInProgress, StatusNeedsInformation, StatusDecided}
	err := d.Tx(context.Background(), func(tx *sql.Tx) error {
		for i := range n {
			assignee := ""
			if i%4 == 1 {
				assignee = agentA
			}
			_, err := tx.Exec(`INSERT INTO cases (id, org_id, citizen, submission_id, template_id, template_version, template_hash,
				status, assignee, due_date, seq, fee_request, created_at, updated_at) VALUES ($1, $2, $3, $4, 'hund', '1.0.0', $5, $6, $7, '2026-05-18', 1, '', $8, $8)`,
				newCaseID(), amt, fmt.Sprintf("acc_%d", i), fmt.Sprintf("sub-%d", i), hundHash, statuses[(i/4)%4], assignee, t0.UnixMilli()+int64(i))
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}
