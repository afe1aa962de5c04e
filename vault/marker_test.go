package vault_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"testing"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/vault"
	vclient "github.com/kanal-server/kanal/vault/client"
)

// tableHits returns the vault rows (table names) whose columns hold
// marker, as text or bytes.
func tableHits(t *testing.T, d *db.DB, marker []byte) []string {
	t.Helper()
	var hits []string
	for _, table := range []string{"vault_documents", "vault_versions", "vault_keys", "vault_shares"} {
		rows, err := d.Query(context.Background(), `SELECT * FROM `+table)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				var b []byte
				switch x := v.(type) {
				case []byte:
					b = x
				case string:
					b = []byte(x)
				default:
					b = []byte(fmt.Sprint(x))
				}
				if bytes.Contains(b, marker) {
					hits = append(hits, table)
				}
			}
		}
		rows.Close()
	}
	return hits
}

func blobHits(t *testing.T, b vault.Blobs, marker []byte) int {
	t.Helper()
	n := 0
	err := b.Walk(context.Background(), func(h string) error {
		rc, err := b.Get(context.Background(), h)
		if err != nil {
			return err
		}
		defer rc.Close()
		data, err := io.ReadAll(rc)
		if bytes.Contains(data, marker) {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestNoPlaintextStored searches the database and the blob store for
// markers put into a document's content, title, tags, folder and file
// name: none may be found. The search itself is checked on what the
// server does hold in the clear (a conversation id).
func TestNoPlaintextStored(t *testing.T) {
	stores(t, func(t *testing.T, d *db.DB, b vault.Blobs) {
		ctx := context.Background()
		e := newEnv(t, d, b, envOptions{})
		phone := e.device("alice", "dev_phone")
		e.device("alice", "dev_laptop")
		clerk := e.device("clerk", "dev_clerk")
		e.w.roles["org_amt/clerk"] = "agent"
		markers := map[string]string{
			"content": "MARKER-CONTENT-7f3a", "title": "MARKER-TITLE-91c2", "tag": "MARKER-TAG-55d0",
			"folder": "MARKER-FOLDER-e41b", "file": "MARKER-FILE-0a9c", "issued": "MARKER-ISSUED-c3d8",
		}
		meta := vclient.Meta{Title: markers["title"], Tags: []string{markers["tag"]}, Folder: markers["folder"], FileName: markers["file"] + ".pdf"}
		doc, err := phone.Put(ctx, bytes.Repeat([]byte(markers["content"]), 100), meta, e.recipients("alice"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := phone.AddVersion(ctx, doc.ID, []byte(markers["content"]+" v2"), meta, e.recipients("alice")); err != nil {
			t.Fatal(err)
		}
		if _, err := clerk.Issue(ctx, "org_amt", "alice", orgConv("org_amt", "alice"), []byte(`{"holder":"`+markers["issued"]+`"}`),
			vclient.Meta{Title: markers["issued"]}, e.recipients("alice")); err != nil {
			t.Fatal(err)
		}
		conv := orgConv("org_amt", "alice")
		if _, err := phone.Share(ctx, doc.ID, 0, conv, "", "org_amt"); err != nil {
			t.Fatal(err)
		}
		for what, m := range markers {
			if hits := tableHits(t, d, []byte(m)); len(hits) > 0 {
				t.Errorf("the %s marker is in the database: %v", what, hits)
			}
			if n := blobHits(t, b, []byte(m)); n > 0 {
				t.Errorf("the %s marker is in %d blobs", what, n)
			}
		}
		if hits := tableHits(t, d, []byte(conv)); len(hits) == 0 {
			t.Fatal("the search does not find the conversation id the server holds: it cannot find anything")
		}
		canary := []byte("MARKER-CANARY-plaintext blob")
		sum := sha256.Sum256(canary)
		if err := b.Put(ctx, hex.EncodeToString(sum[:]), int64(len(canary)), bytes.NewReader(canary)); err != nil {
			t.Fatal(err)
		}
		if blobHits(t, b, []byte("MARKER-CANARY")) != 1 {
			t.Fatal("the blob search does not find a plaintext blob: it cannot find anything")
		}
		if err := b.Delete(ctx, hex.EncodeToString(sum[:])); err != nil {
			t.Fatal(err)
		}
		if blobCount(t, b) != 3 {
			t.Fatalf("%d blobs, want 3", blobCount(t, b))
		}
	})
}
