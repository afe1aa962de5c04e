package vault_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/vault"
	vclient "github.com/kanal-server/kanal/vault/client"
)

// problemType returns the problem type of err, "" if it is none.
func problemType(err error) string {
	var p *idclient.Problem
	if errors.As(err, &p) {
		return p.Type
	}
	return ""
}

func wantProblem(t *testing.T, err error, typ string) {
	t.Helper()
	if got := problemType(err); got != typ {
		t.Fatalf("error %v: type %q, want %q", err, got, typ)
	}
}

// count returns the rows of a vault table.
func count(t testing.TB, d *db.DB, table string) int {
	t.Helper()
	var n int
	if err := d.QueryRow(context.Background(), `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func blobCount(t testing.TB, b vault.Blobs) int {
	t.Helper()
	n := 0
	if err := b.Walk(context.Background(), func(string) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestVault is the vault's suite, run against both databases and both
// blob stores: two devices, one enrolled later, versions, sharing and
// withdrawal, an issued document, deletion, export and erasure.
func TestVault(t *testing.T) {
	stores(t, func(t *testing.T, d *db.DB, b vault.Blobs) {
		ctx := context.Background()
		e := newEnv(t, d, b, envOptions{})
		phone := e.device("alice", "dev_phone")
		laptop := e.device("alice", "dev_laptop")

		permit := []byte("%PDF-1.7 residence certificate of Alice")
		doc, err := phone.Put(ctx, permit, vclient.Meta{Title: "Meldebescheinigung", Tags: []string{"amt"}, Folder: "Wohnen"}, e.recipients("alice"))
		if err != nil {
			t.Fatal(err)
		}
		if doc.Class != vault.ClassPersonal || len(doc.Versions) != 1 || doc.Versions[0].Size <= int64(len(permit)) {
			t.Fatalf("stored %+v", doc)
		}
		got, m, err := laptop.Get(ctx, doc.ID, 0)
		if err != nil || !bytes.Equal(got, permit) || m.Title != "Meldebescheinigung" || m.Folder != "Wohnen" {
			t.Fatalf("laptop reads %q %+v %v", got, m, err)
		}

		// A second version; the first stays readable.
		v2 := []byte("%PDF-1.7 residence certificate of Alice, new address")
		if _, err := laptop.AddVersion(ctx, doc.ID, v2, vclient.Meta{Title: "Meldebescheinigung 2026"}, e.recipients("alice")); err != nil {
			t.Fatal(err)
		}
		d2, metas, err := phone.Document(ctx, doc.ID)
		if err != nil || len(d2.Versions) != 2 || metas[1].Title != "Meldebescheinigung 2026" {
			t.Fatalf("versions %+v %+v %v", d2, metas, err)
		}
		if got, _, err := phone.Get(ctx, doc.ID, 1); err != nil || !bytes.Equal(got, permit) {
			t.Fatalf("version 1: %q %v", got, err)
		}

		// A device enrolled later has no key until an existing one
		// re-wraps; the server cannot give it one.
		tablet := e.device("alice", "dev_tablet")
		if _, _, err := tablet.Get(ctx, doc.ID, 0); err == nil {
			t.Fatal("a new device read a document no device re-wrapped for it")
		}
		n, err := phone.Rewrap(ctx, e.recipients("alice"))
		if err != nil || n != 2 {
			t.Fatalf("rewrap: %d %v", n, err)
		}
		if got, _, err := tablet.Get(ctx, doc.ID, 0); err != nil || !bytes.Equal(got, v2) {
			t.Fatalf("tablet reads %q %v", got, err)
		}
		if n, err := laptop.Rewrap(ctx, e.recipients("alice")); err != nil || n != 0 {
			t.Fatalf("second rewrap: %d %v", n, err)
		}
		entries, usage, err := tablet.List(ctx)
		if err != nil || len(entries) != 1 || entries[0].Meta.Title != "Meldebescheinigung 2026" || usage.PersonalBytes == 0 {
			t.Fatalf("list %+v %+v %v", entries, usage, err)
		}

		// An office issues a document into Alice's vault.
		clerk := e.device("clerk", "dev_clerk")
		e.w.roles["org_amt/clerk"] = "agent"
		issued, err := clerk.Issue(ctx, "org_amt", "alice", orgConv("org_amt", "alice"), []byte(`{"permit":"parking"}`),
			vclient.Meta{Title: "Bewohnerparkausweis"}, e.recipients("alice"))
		if err != nil {
			t.Fatal(err)
		}
		if issued.Document.Class != vault.ClassIssued || issued.Document.IssuerOrg != "org_amt" || issued.Document.Account != "alice" {
			t.Fatalf("issued %+v", issued.Document)
		}
		if got, m, err := tablet.Get(ctx, issued.Document.ID, 0); err != nil || string(got) != `{"permit":"parking"}` || m.Title != "Bewohnerparkausweis" {
			t.Fatalf("alice reads the issued document: %q %v", got, err)
		}
		_, err = phone.AddVersion(ctx, issued.Document.ID, []byte("forged"), vclient.Meta{Title: "x"}, e.recipients("alice"))
		wantProblem(t, err, "urn:kanal:problem:forbidden")

		// Alice shares the issued document with another office; its agent
		// fetches it with the key from the chat; then she withdraws it.
		other := e.device("sachb", "dev_sachb")
		e.w.roles["org_other/sachb"] = "agent"
		sh, err := tablet.Share(ctx, issued.Document.ID, 0, orgConv("org_other", "alice"), "", "org_other")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := other.Fetch(ctx, sh.Share.DocumentID, sh.Share.Version, sh.Key, sh.Share.SHA256); err != nil || string(got) != `{"permit":"parking"}` {
			t.Fatalf("the other office fetches %q %v", got, err)
		}
		if l, err := other.Shares(ctx, "org_other"); err != nil || len(l.Received) != 1 {
			t.Fatalf("shares of org_other: %+v %v", l, err)
		}
		if _, err := phone.Unshare(ctx, sh.Share.ID); err != nil {
			t.Fatal(err)
		}
		_, err = other.Fetch(ctx, sh.Share.DocumentID, sh.Share.Version, sh.Key, sh.Share.SHA256)
		wantProblem(t, err, "urn:kanal:problem:not-found")
		if len(e.notes.got) != 1 || e.notes.got[0].Org != "org_other" {
			t.Fatalf("withdrawals told: %+v", e.notes.got)
		}

		// Export and erasure.
		ex, err := e.svc.ExportAccount(ctx, "alice")
		if err != nil || len(ex.Documents) != 2 || len(ex.SharesMade) != 1 {
			t.Fatalf("export %+v %v", ex, err)
		}
		if k := len(ex.Documents[0].Keys) + len(ex.Documents[1].Keys); k != 9 {
			t.Fatalf("export lists %d wrapped keys, want 9 (3 devices × 3 versions)", k)
		}
		if err := phone.Delete(ctx, doc.ID); err != nil {
			t.Fatal(err)
		}
		if _, _, err := phone.Get(ctx, doc.ID, 0); problemType(err) != "urn:kanal:problem:not-found" {
			t.Fatalf("deleted document: %v", err)
		}
		if n := blobCount(t, b); n != 1 {
			t.Fatalf("%d blobs after deleting a two-version document, want 1", n)
		}
		er, err := e.svc.EraseAccount(ctx, "alice")
		if err != nil || er.Documents != 1 {
			t.Fatalf("erase %+v %v", er, err)
		}
		for _, table := range []string{"vault_documents", "vault_versions", "vault_keys", "vault_shares"} {
			if n := count(t, d, table); n != 0 {
				t.Errorf("%s has %d rows after erasure", table, n)
			}
		}
		if n := blobCount(t, b); n != 0 {
			t.Fatalf("%d blobs after erasure", n)
		}
	})
}
