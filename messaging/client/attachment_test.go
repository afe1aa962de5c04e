package client_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
)

// TestAttachment: alice uploads an encrypted file and sends the attachment
// message; bob downloads, checks and decrypts it. The server only ever
// held ciphertext, and a message naming another hash is refused.
func TestAttachment(t *testing.T) {
	ctx := context.Background()
	srv, _, bob, aliceSDK, bobSDK := twoPublished(t)
	file := bytes.Repeat([]byte("%PDF-1.7 Bescheid über die Anwohnerparkberechtigung\n"), 2000)
	body, err := aliceSDK.UploadAttachment(ctx, file, "application/pdf", "Bescheid.pdf")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := kind.New(client.NewMessageID(), time.Now(), body)
	if _, err := aliceSDK.Send(ctx, client.Peer{AccountID: bob.AccountID}, m); err != nil {
		t.Fatal(err)
	}
	st, err := bobSDK.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got, bad, err := st.Backlog(ctx)
	if err != nil || len(bad) > 0 || len(got) != 1 {
		t.Fatalf("backlog: %v %v %d", err, bad, len(got))
	}
	a := got[0].Message.Body.(*kind.AttachmentBody)
	plain, err := bobSDK.DownloadAttachment(ctx, a)
	if err != nil || !bytes.Equal(plain, file) || a.Name != "Bescheid.pdf" {
		t.Fatalf("download: %v, %d bytes", err, len(plain))
	}
	// The stored blob is not the file.
	d := (&deployment{nodes: nil}).openFile(t, srv.DataDir)
	var stored []byte
	if err := d.QueryRow(ctx, `SELECT data FROM messaging_blobs WHERE id = $1`, a.BlobID).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(stored, []byte("Anwohnerparkberechtigung")) {
		t.Fatal("the server holds the plaintext")
	}
	// A message whose hash does not match what the server returns.
	wrong := *a
	wrong.SHA256 = "0000000000000000000000000000000000000000000000000000000000000000"
	if _, err := bobSDK.DownloadAttachment(ctx, &wrong); !errors.Is(err, client.ErrAttachment) {
		t.Fatalf("mismatching hash: %v", err)
	}
	wrongKey := *a
	wrongKey.Key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	if _, err := bobSDK.DownloadAttachment(ctx, &wrongKey); !errors.Is(err, client.ErrAttachment) {
		t.Fatalf("wrong key: %v", err)
	}
}

// twoPublished starts kanald with alice (P-256) and bob (Ed25519), each
// with an SDK whose keys are published.
func twoPublished(t *testing.T) (*server, *user, *user, *client.Client, *client.Client) {
	t.Helper()
	srv := startKanald(t, false)
	alice, bob := signUp(t, srv, "alice@example.org", true), signUp(t, srv, "bob@example.org", false)
	aliceSDK, bobSDK := alice.SDK(t, srv.URL, client.NewMemoryStore()), bob.SDK(t, srv.URL, client.NewMemoryStore())
	for _, s := range []*client.Client{aliceSDK, bobSDK} {
		if _, err := s.Publish(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return srv, alice, bob, aliceSDK, bobSDK
}
