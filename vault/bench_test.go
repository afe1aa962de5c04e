package vault_test

import (
	"context"
	"crypto/rand"
	"testing"

	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/vault"
	vclient "github.com/kanal-server/kanal/vault/client"
)

// benchStores are the blob stores the benchmarks compare.
func benchStores(b *testing.B, fn func(b *testing.B, e *env)) {
	for _, name := range []string{"dir", "s3"} {
		b.Run(name, func(b *testing.B) {
			var blobs vault.Blobs
			if name == "dir" {
				d, err := vault.NewDirBlobs(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				blobs = d
			} else {
				blobs = s3Blobs(b)
			}
			fn(b, newEnv(b, dbtest.SQLite(b, vault.Migrations()), blobs, envOptions{}))
		})
	}
}

// BenchmarkPut10MiB encrypts a 10 MiB document on the device, wraps its
// key to two devices and stores it over HTTP (SQLite, each store).
func BenchmarkPut10MiB(b *testing.B) {
	benchStores(b, func(b *testing.B, e *env) {
		phone := e.device("alice", "dev_phone")
		e.device("alice", "dev_laptop")
		data := make([]byte, 10<<20)
		rand.Read(data)
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := phone.Put(context.Background(), data, vclient.Meta{Title: "scan"}, e.recipients("alice")); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkGet10MiB downloads, checks and decrypts a 10 MiB document on
// another device of the account.
func BenchmarkGet10MiB(b *testing.B) {
	benchStores(b, func(b *testing.B, e *env) {
		phone := e.device("alice", "dev_phone")
		laptop := e.device("alice", "dev_laptop")
		data := make([]byte, 10<<20)
		rand.Read(data)
		doc, err := phone.Put(context.Background(), data, vclient.Meta{Title: "scan"}, e.recipients("alice"))
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := laptop.Get(context.Background(), doc.ID, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkExportAccount1000 is the vault's part of an account's export
// (GDPR Art. 15): the metadata of 1,000 documents, their keys and shares.
func BenchmarkExportAccount1000(b *testing.B) {
	d := dbtest.SQLite(b, vault.Migrations())
	blobs, err := vault.NewDirBlobs(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	e := newEnv(b, d, blobs, envOptions{})
	phone := e.device("alice", "dev_phone")
	e.device("alice", "dev_laptop")
	for i := range 1000 {
		if _, err := phone.Put(context.Background(), []byte{byte(i), byte(i >> 8)}, vclient.Meta{Title: "receipt"}, e.recipients("alice")); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		ex, err := e.svc.ExportAccount(context.Background(), "alice")
		if err != nil || len(ex.Documents) != 1000 {
			b.Fatal(len(ex.Documents), err)
		}
	}
}
