package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"

	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/keys"
	vclient "github.com/kanal-server/kanal/vault/client"
)

// vaultAccount signs up an account on srv and puts n documents of size
// bytes into its vault, each with a title; it returns the device and its
// vault client.
func vaultAccount(tb testing.TB, srv *kanaldtest.Server, n, size int) (*kanaldtest.Device, *vclient.Client) {
	tb.Helper()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	d := srv.SignUp(tb, fmt.Sprintf("vault-%d@example.org", n), key)
	idk, err := keys.GenerateIdentity(nil)
	if err != nil {
		tb.Fatal(err)
	}
	vc, err := vclient.New(vclient.Options{BaseURL: srv.URL, Token: d.Token, DeviceID: d.DeviceID, Device: idk})
	if err != nil {
		tb.Fatal(err)
	}
	to := []vclient.Recipient{{Device: d.DeviceID, Key: idk.Public()}}
	data := make([]byte, size)
	for i := range n {
		copy(data, fmt.Sprintf("document %d", i))
		if _, err := vc.Put(context.Background(), data, vclient.Meta{Title: fmt.Sprintf("Bescheid %d", i), FileName: fmt.Sprintf("bescheid-%d.pdf", i)}, to); err != nil {
			tb.Fatalf("put %d: %v", i, err)
		}
	}
	return d, vc
}

// TestExportDecryptsVaultDocuments: the archive holds each vault document,
// decrypted on the device, under the name README.txt gives it.
func TestExportDecryptsVaultDocuments(t *testing.T) {
	srv := kanaldtest.Start(t, bin.kanald)
	d, vc := vaultAccount(t, srv, 3, 64)
	ctx := context.Background()
	x, err := d.Identity.ExportAccount(ctx, d.DeviceID, d.Key)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := fetchVaultDocuments(ctx, vc)
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 3 {
		t.Fatalf("%d vault files, want 3", len(docs))
	}
	archive, err := exportArchive(x, srv.URL, docs)
	if err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/export.zip"
	if err := writeNew(path, archive); err != nil {
		t.Fatal(err)
	}
	files := readZip(t, path)
	for _, f := range docs {
		got, ok := files[f.name]
		if !ok || !strings.HasPrefix(got, "document ") || got != string(f.data) {
			t.Errorf("%s: %q", f.name, got)
		}
		if !strings.Contains(files["README.txt"], f.name) || !strings.Contains(files["README.txt"], f.title) {
			t.Errorf("README.txt does not name %s (%q)", f.name, f.title)
		}
	}
	var vault struct {
		Documents []struct {
			ID string `json:"id"`
		} `json:"documents"`
	}
	unmarshal(t, files["vault.json"], &vault)
	if len(vault.Documents) != 3 {
		t.Errorf("vault.json lists %d documents, want 3", len(vault.Documents))
	}
}

// BenchmarkAccountExport1000Documents is 'kanal account export' of an
// account with 1,000 vault documents of 1 KiB against a real kanald on
// SQLite: the server's export (every domain's part), then fetching and
// decrypting every document on the device, then the zip.
func BenchmarkAccountExport1000Documents(b *testing.B) {
	srv := kanaldtest.Start(b, bin.kanald)
	d, vc := vaultAccount(b, srv, 1000, 1<<10)
	ctx := context.Background()
	b.Run("server", func(b *testing.B) {
		for b.Loop() {
			if _, err := d.Identity.ExportAccount(ctx, d.DeviceID, d.Key); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("whole", func(b *testing.B) {
		for b.Loop() {
			x, err := d.Identity.ExportAccount(ctx, d.DeviceID, d.Key)
			if err != nil {
				b.Fatal(err)
			}
			docs, err := fetchVaultDocuments(ctx, vc)
			if err != nil {
				b.Fatal(err)
			}
			if len(docs) != 1000 {
				b.Fatalf("%d documents", len(docs))
			}
			archive, err := exportArchive(x, srv.URL, docs)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(len(archive)), "zip-bytes")
		}
	})
}
