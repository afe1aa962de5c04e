package vault_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"mime/multipart"
	"net/http"
	"testing"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/vault"
	vclient "github.com/kanal-server/kanal/vault/client"
)

// nothingStored fails unless the vault holds no rows and no blobs.
func nothingStored(t *testing.T, e *env) {
	t.Helper()
	for _, table := range []string{"vault_documents", "vault_versions", "vault_keys", "vault_shares"} {
		if n := count(t, e.d, table); n != 0 {
			t.Errorf("%s has %d rows", table, n)
		}
	}
	if n := blobCount(t, e.blobs); n != 0 {
		t.Errorf("the blob store holds %d blobs", n)
	}
}

// rawPut uploads as dev with a hand-made body: what an attacker's own
// client sends.
func rawPut(t *testing.T, e *env, dev string, in vault.PutRequest, content []byte) (int, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mj, _ := json.Marshal(in)
	w, _ := mw.CreateFormField("meta")
	w.Write(mj)
	w, _ = mw.CreateFormFile("content", "content")
	w.Write(content)
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/vault/documents", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+dev)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p struct{ Type string }
	if resp.Header.Get("Content-Type") != "application/problem+json" && resp.StatusCode >= 300 {
		t.Fatalf("status %d without problem+json", resp.StatusCode)
	}
	json.NewDecoder(resp.Body).Decode(&p)
	return resp.StatusCode, p.Type
}

func TestAttackOverSizeAndQuota(t *testing.T) {
	stores(t, func(t *testing.T, d *db.DB, b vault.Blobs) {
		ctx := context.Background()
		e := newEnv(t, d, b, envOptions{maxDoc: 1024, quota: 3000})
		phone := e.device("alice", "dev_phone")
		_, err := phone.Put(ctx, make([]byte, 2000), vclient.Meta{Title: "big"}, e.recipients("alice"))
		wantProblem(t, err, "urn:kanal:problem:document-too-large")
		nothingStored(t, e)
		// A client that lies about the size is cut off at the limit.
		big := make([]byte, 4096)
		sum := sha256.Sum256(big)
		code, typ := rawPut(t, e, "dev_phone", vault.PutRequest{SHA256: hex.EncodeToString(sum[:]), Size: 100, Meta: []byte("m"),
			Keys: []vault.WrappedKey{{Device: "dev_phone", Wrapped: []byte("k")}}}, big)
		if code != http.StatusUnprocessableEntity || typ != "urn:kanal:problem:validation" {
			t.Fatalf("a body longer than its size: %d %s", code, typ)
		}
		nothingStored(t, e)

		for i := range 3 {
			if _, err := phone.Put(ctx, make([]byte, 900), vclient.Meta{Title: "ok"}, e.recipients("alice")); err != nil {
				t.Fatalf("put %d: %v", i, err)
			}
		}
		_, err = phone.Put(ctx, make([]byte, 900), vclient.Meta{Title: "one too many"}, e.recipients("alice"))
		wantProblem(t, err, "urn:kanal:problem:quota-exceeded")
		if n := count(t, d, "vault_versions"); n != 3 {
			t.Fatalf("%d versions after a refused put, want 3", n)
		}
		if n := blobCount(t, b); n != 3 {
			t.Fatalf("%d blobs after a refused put, want 3", n)
		}
	})
}

func TestAttackKeyForAnotherAccountsDevice(t *testing.T) {
	stores(t, func(t *testing.T, d *db.DB, b vault.Blobs) {
		ctx := context.Background()
		e := newEnv(t, d, b, envOptions{})
		phone := e.device("alice", "dev_phone")
		e.device("mallory", "dev_mallory")
		// Alice's client is made to wrap to Mallory's device as if it
		// were hers: the server refuses it and stores nothing.
		to := append(e.recipients("alice"), e.recipients("mallory")...)
		_, err := phone.Put(ctx, []byte("secret"), vclient.Meta{Title: "t"}, to)
		wantProblem(t, err, "urn:kanal:problem:not-account-device")
		nothingStored(t, e)

		// Nor can a re-wrap add Mallory's device to Alice's document.
		doc, err := phone.Put(ctx, []byte("secret"), vclient.Meta{Title: "t"}, e.recipients("alice"))
		if err != nil {
			t.Fatal(err)
		}
		req, _ := json.Marshal(vault.AddKeysRequest{Keys: []vault.AddKey{{DocumentID: doc.ID, Version: 1, Device: "dev_mallory", Wrapped: []byte("k")}}})
		r, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/vault/keys", bytes.NewReader(req))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", "Bearer dev_phone")
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnprocessableEntity {
			t.Fatalf("re-wrap to another account's device: %d", resp.StatusCode)
		}
		if n := count(t, d, "vault_keys"); n != 1 {
			t.Fatalf("%d keys, want 1", n)
		}
	})
}

func TestAttackShareOutsideTheConversation(t *testing.T) {
	stores(t, func(t *testing.T, d *db.DB, b vault.Blobs) {
		ctx := context.Background()
		e := newEnv(t, d, b, envOptions{})
		phone := e.device("alice", "dev_phone")
		e.device("bob", "dev_bob")
		e.device("carol", "dev_carol")
		doc, err := phone.Put(ctx, []byte("secret"), vclient.Meta{Title: "t"}, e.recipients("alice"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = phone.Share(ctx, doc.ID, 0, directConv("alice", "carol"), "bob", "")
		wantProblem(t, err, "urn:kanal:problem:not-conversation-party")
		_, err = phone.Share(ctx, doc.ID, 0, orgConv("org_amt", "carol"), "", "org_amt")
		wantProblem(t, err, "urn:kanal:problem:not-conversation-party")
		if n := count(t, d, "vault_shares"); n != 0 {
			t.Fatalf("%d shares stored", n)
		}
	})
}

func TestAttackStrangers(t *testing.T) {
	stores(t, func(t *testing.T, d *db.DB, b vault.Blobs) {
		ctx := context.Background()
		e := newEnv(t, d, b, envOptions{})
		phone := e.device("alice", "dev_phone")
		bob := e.device("bob", "dev_bob")
		doc, err := phone.Put(ctx, []byte("secret"), vclient.Meta{Title: "t"}, e.recipients("alice"))
		if err != nil {
			t.Fatal(err)
		}
		v := doc.Versions[0]
		_, err = bob.Fetch(ctx, doc.ID, 1, make([]byte, 32), v.SHA256)
		wantProblem(t, err, "urn:kanal:problem:not-found")
		_, _, err = bob.Document(ctx, doc.ID)
		wantProblem(t, err, "urn:kanal:problem:not-found")
		wantProblem(t, bob.Delete(ctx, doc.ID), "urn:kanal:problem:not-found")
		_, err = bob.AddVersion(ctx, doc.ID, []byte("x"), vclient.Meta{}, e.recipients("bob"))
		wantProblem(t, err, "urn:kanal:problem:not-found")
		sh, err := phone.Share(ctx, doc.ID, 0, directConv("alice", "bob"), "bob", "")
		if err != nil {
			t.Fatal(err)
		}
		_, err = bob.Unshare(ctx, sh.Share.ID)
		wantProblem(t, err, "urn:kanal:problem:not-found")
		// Bob is no agent of the office: he cannot issue into Alice's vault.
		_, err = bob.Issue(ctx, "org_amt", "alice", orgConv("org_amt", "alice"), []byte("{}"), vclient.Meta{Title: "fake permit"}, e.recipients("alice"))
		wantProblem(t, err, "urn:kanal:problem:forbidden")
		if n := count(t, d, "vault_versions"); n != 1 {
			t.Fatalf("%d versions, want 1", n)
		}
	})
}

// TestAttackTampered is the server (or whoever writes its database or
// blob store) altering what it holds: the device refuses it.
func TestAttackTampered(t *testing.T) {
	stores(t, func(t *testing.T, d *db.DB, b vault.Blobs) {
		ctx := context.Background()
		e := newEnv(t, d, b, envOptions{})
		phone := e.device("alice", "dev_phone")
		laptop := e.device("alice", "dev_laptop")

		// Content that does not hash to its address is refused on upload.
		content := []byte("ciphertext")
		code, typ := rawPut(t, e, "dev_phone", vault.PutRequest{SHA256: hex.EncodeToString(make([]byte, 32)), Size: int64(len(content)),
			Meta: []byte("m"), Keys: []vault.WrappedKey{{Device: "dev_phone", Wrapped: []byte("k")}}}, content)
		if code != http.StatusUnprocessableEntity || typ != "urn:kanal:problem:validation" {
			t.Fatalf("mismatched content: %d %s", code, typ)
		}
		nothingStored(t, e)

		a, err := phone.Put(ctx, []byte("document A"), vclient.Meta{Title: "A"}, e.recipients("alice"))
		if err != nil {
			t.Fatal(err)
		}
		bdoc, err := phone.Put(ctx, []byte("document B"), vclient.Meta{Title: "B"}, e.recipients("alice"))
		if err != nil {
			t.Fatal(err)
		}
		exec := func(q string, args ...any) {
			t.Helper()
			if _, err := d.Exec(ctx, q, args...); err != nil {
				t.Fatal(err)
			}
		}
		// The version of A is pointed at B's ciphertext.
		exec(`UPDATE vault_versions SET blob_hash = $1 WHERE document_id = $2`, bdoc.Versions[0].SHA256, a.ID)
		if _, _, err := laptop.Get(ctx, a.ID, 0); !errors.Is(err, vclient.ErrTampered) {
			t.Fatalf("swapped ciphertext: %v", err)
		}
		exec(`UPDATE vault_versions SET blob_hash = $1 WHERE document_id = $2`, a.Versions[0].SHA256, a.ID)
		// The laptop's row is given the phone's wrapped key.
		exec(`UPDATE vault_keys SET wrapped = (SELECT wrapped FROM vault_keys WHERE document_id = $1 AND device_id = 'dev_phone')
			WHERE document_id = $1 AND device_id = 'dev_laptop'`, a.ID)
		if _, _, err := laptop.Get(ctx, a.ID, 0); !errors.Is(err, vclient.ErrTampered) {
			t.Fatalf("another device's wrapped key: %v", err)
		}
		// The encrypted title is altered.
		meta := append([]byte(nil), bdoc.Versions[0].Meta...)
		meta[len(meta)-1] ^= 1
		exec(`UPDATE vault_versions SET meta = $1 WHERE document_id = $2`, meta, bdoc.ID)
		if _, _, err := laptop.Get(ctx, bdoc.ID, 0); !errors.Is(err, vclient.ErrTampered) {
			t.Fatalf("altered metadata: %v", err)
		}
		// A recipient given a hash that is not the stored one refuses it.
		if _, err := phone.Fetch(ctx, a.ID, 1, make([]byte, 32), bdoc.Versions[0].SHA256); !errors.Is(err, vclient.ErrTampered) {
			t.Fatalf("fetch against another hash: %v", err)
		}
	})
}
