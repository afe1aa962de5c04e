package messaging_test

import (
	"context"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/messaging"
)

// TestSendsKeyMigrationKeepsTheRows: a deployment that stored idempotency
// rows under the old key (sender_device, client_id) keeps them through
// migration 0009, which on SQLite keys them client id first (PostgreSQL
// keeps its key): a retry after the upgrade still finds its first answer,
// a second row with the same pair is still refused, and another device
// may still use the same client id.
func TestSendsKeyMigrationKeepsTheRows(t *testing.T) {
	ctx := context.Background()
	all := messaging.Migrations()
	before := fstest.MapFS{}
	err := fs.WalkDir(all.FS, ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || p >= "0009" {
			return err
		}
		b, err := fs.ReadFile(all.FS, p)
		before[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	old := db.Migrations{Domain: all.Domain, FS: before}
	dbtest.Run(t, nil, func(t *testing.T, d *db.DB) {
		if err := d.Migrate(ctx, old); err != nil {
			t.Fatal(err)
		}
		const insert = `INSERT INTO messaging_sends (sender_device, client_id, conversation, result, created_at) VALUES ($1, $2, $3, $4, $5)`
		if _, err := d.Exec(ctx, insert, "dev_a", "c1", "conv_1", `{"conversation_id":"conv_1"}`, 1796493600); err != nil {
			t.Fatal(err)
		}
		if err := d.Migrate(ctx, all); err != nil {
			t.Fatalf("migrating to 0009: %v", err)
		}
		var conv, result string
		if err := d.QueryRow(ctx, `SELECT conversation, result FROM messaging_sends WHERE sender_device = $1 AND client_id = $2`, "dev_a", "c1").Scan(&conv, &result); err != nil {
			t.Fatalf("the row stored before the migration: %v", err)
		}
		if conv != "conv_1" || !strings.Contains(result, "conv_1") {
			t.Errorf("row after the migration: %q %q", conv, result)
		}
		if _, err := d.Exec(ctx, insert, "dev_a", "c1", "conv_2", "{}", 1796493601); !db.IsUniqueViolation(err) {
			t.Errorf("a second row for (dev_a, c1): %v, want a unique violation", err)
		}
		if _, err := d.Exec(ctx, insert, "dev_b", "c1", "conv_2", "{}", 1796493601); err != nil {
			t.Errorf("another device's send with the same client id: %v", err)
		}
		// The key's first column; the expiry sweep's index is there.
		lead, index := `SELECT name FROM pragma_index_info('sqlite_autoindex_messaging_sends_1') WHERE seqno = 0`,
			`SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'messaging_sends_created'`
		if d.Dialect() == db.Postgres {
			lead = `SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
				WHERE i.indrelid = 'messaging_sends'::regclass AND i.indisprimary`
			index = `SELECT COUNT(*) FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'messaging_sends' AND indexname = 'messaging_sends_created'`
		}
		want := "client_id"
		if d.Dialect() == db.Postgres {
			want = "sender_device"
		}
		var first string
		if err := d.QueryRow(ctx, lead).Scan(&first); err != nil || first != want {
			t.Errorf("the key's first column: %q, %v; want %s", first, err, want)
		}
		var n int
		if err := d.QueryRow(ctx, index).Scan(&n); err != nil || n != 1 {
			t.Errorf("index messaging_sends_created: %d, %v", n, err)
		}
	})
}
