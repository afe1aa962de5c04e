package translog_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/kanal-server/kanal/identity/translog"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/keys/transparency"
)

// benchEntries is the size of the log the benchmarks run on; set
// KANAL_BENCH_LOG_ENTRIES for another (the docs' figures: 1,048,576).
func benchEntries(b *testing.B) int {
	if s := os.Getenv("KANAL_BENCH_LOG_ENTRIES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("KANAL_BENCH_LOG_ENTRIES=%q", s)
		}
		return n
	}
	return 1 << 20
}

// benchEntry is an identity-key entry as a bundle claim proves it.
func benchEntry(i int) transparency.Entry {
	key := make([]byte, 64)
	copy(key, strconv.Itoa(i))
	return transparency.Entry{Kind: transparency.KindIdentityKey, Account: "acc_" + strconv.Itoa(i/2), Device: "dev_" + strconv.Itoa(i),
		Cert: transparency.CertFingerprint([]byte("cert " + strconv.Itoa(i))), Key: key, Time: int64(1767225600 + i)}
}

// bulkLog fills an empty log with n entries straight into its tables,
// the stored hashes computed in memory with tlog, and signs one
// checkpoint of size n: what n appends would leave, in seconds rather
// than hours.
func bulkLog(b *testing.B, d *db.DB, l *translog.Log, n int) {
	b.Helper()
	ctx := context.Background()
	var hashes []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hashes[x]
		}
		return out, nil
	})
	const batch = 500
	var entryRows, hashRows []any
	flush := func(tx *sql.Tx, force bool) error {
		if len(entryRows) >= 8*batch || force && len(entryRows) > 0 {
			if err := insertRows(ctx, tx, `INSERT INTO translog_entries (idx, kind, account, device, org, cert, data, created_at) VALUES `, 8, entryRows); err != nil {
				return err
			}
			entryRows = entryRows[:0]
		}
		if len(hashRows) >= 2*batch || force && len(hashRows) > 0 {
			if err := insertRows(ctx, tx, `INSERT INTO translog_hashes (idx, hash) VALUES `, 2, hashRows); err != nil {
				return err
			}
			hashRows = hashRows[:0]
		}
		return nil
	}
	const perTx = 50000
	for start := 0; start < n; start += perTx {
		err := d.Tx(ctx, func(tx *sql.Tx) error {
			for i := start; i < min(start+perTx, n); i++ {
				e := benchEntry(i)
				data, err := e.Marshal()
				if err != nil {
					return err
				}
				hs, err := tlog.StoredHashes(int64(i), data, r)
				if err != nil {
					return err
				}
				base := tlog.StoredHashIndex(0, int64(i))
				for j, h := range hs {
					hashes = append(hashes, h)
					hashRows = append(hashRows, base+int64(j), h[:])
				}
				entryRows = append(entryRows, i, string(e.Kind), e.Account, e.Device, "", e.Cert.String(), data, e.Time)
				if err := flush(tx, false); err != nil {
					return err
				}
			}
			return flush(tx, true)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	// The checkpoint of size n, signed by the log's key as Append would.
	root, err := tlog.TreeHash(int64(n), r)
	if err != nil {
		b.Fatal(err)
	}
	signer, _, err := translog.LoadOrCreateKey(filepath.Join(benchKeyDir, "log.key"), origin, rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	msg, err := transparency.Sign(transparency.Checkpoint{Origin: origin, Size: int64(n), Hash: root}, signer)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := d.Exec(ctx, `INSERT INTO translog_checkpoints (size, note, created_at) VALUES ($1, $2, 0)`, n, string(msg)); err != nil {
		b.Fatal(err)
	}
	// The planner statistics a database that grew to this size would
	// have (autovacuum has not caught up with a bulk load yet).
	if _, err := d.Exec(ctx, `ANALYZE`); err != nil {
		b.Fatal(err)
	}
}

// insertRows inserts rows of width columns with one statement.
func insertRows(ctx context.Context, tx *sql.Tx, prefix string, width int, args []any) error {
	var q strings.Builder
	q.WriteString(prefix)
	for i := 0; i < len(args)/width; i++ {
		if i > 0 {
			q.WriteString(",")
		}
		q.WriteString("(")
		for j := range width {
			if j > 0 {
				q.WriteString(",")
			}
			fmt.Fprintf(&q, "$%d", i*width+j+1)
		}
		q.WriteString(")")
	}
	_, err := tx.ExecContext(ctx, q.String(), args...)
	return err
}

// benchKeyDir holds the log key the benchmarks share (a bulk-built log
// and the Log that appends to it must use one key).
var benchKeyDir string

// BenchmarkLog measures the log at the size of a large deployment
// (1,048,576 entries, both engines): appending one entry in its own
// transaction (what an enrolment or key publication adds), finding and
// proving a bundle claim's identity-key entry (what each claimed bundle
// costs the server), the client's check of it, and the proof's size.
func BenchmarkLog(b *testing.B) {
	n := benchEntries(b)
	benchKeyDir = b.TempDir()
	engines := []string{"sqlite", "postgres"}
	if e := os.Getenv("KANAL_BENCH_ENGINE"); e != "" {
		engines = []string{e}
	}
	for _, engine := range engines {
		b.Run(engine, func(b *testing.B) {
			d := dbtest.Open(b, engine, translog.Migrations())
			bulkLog(b, d, nil, n)
			signer, vkey, err := translog.LoadOrCreateKey(filepath.Join(benchKeyDir, "log.key"), origin, rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			l, err := translog.New(ctx, translog.Options{DB: d, Signer: signer, Verifier: vkey})
			if err != nil {
				b.Fatal(err)
			}
			benchLog(b, d, l, n, vkey)
		})
	}
}

func benchLog(b *testing.B, d *db.DB, l *translog.Log, n int, vkey string) {
	ctx := context.Background()
	b.Run("append", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			e := benchEntry(n + 1_000_000 + i)
			if err := d.Tx(ctx, func(tx *sql.Tx) error {
				_, err := l.Append(ctx, tx, e)
				return err
			}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
	})
	pick := func() int {
		x, _ := rand.Int(rand.Reader, big.NewInt(int64(n)))
		return int(x.Int64())
	}
	var sample *transparency.Attachment
	b.Run("prove-claim", func(b *testing.B) {
		for b.Loop() {
			e := benchEntry(pick())
			a, err := l.Attach(ctx, transparency.KindIdentityKey, e.Device, e.Cert, "")
			if err != nil {
				b.Fatal(err)
			}
			sample = a
		}
		js, _ := json.Marshal(sample)
		b.ReportMetric(float64(32*len(sample.Proof)), "proof-B")
		b.ReportMetric(float64(len(js)), "attachment-B")
	})
	v, err := transparency.NewVerifier(vkey)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("verify-claim", func(b *testing.B) {
		// What the SDK does per claimed bundle whose checkpoint equals
		// the stored one: open the signed checkpoint, check the
		// inclusion proof, parse the entry.
		for b.Loop() {
			cp, _, err := transparency.Open([]byte(sample.Checkpoint), v)
			if err != nil {
				b.Fatal(err)
			}
			proof, err := transparency.DecodeHashes(sample.Proof)
			if err != nil {
				b.Fatal(err)
			}
			if err := transparency.VerifyInclusion(cp, sample.Index, sample.Entry, proof); err != nil {
				b.Fatal(err)
			}
			if _, err := transparency.ParseEntry(sample.Entry); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify-claim-pinned", func(b *testing.B) {
		// The same when the attached checkpoint is the very note the
		// client stored: its signature was checked when it was stored.
		cp, _, _ := transparency.Open([]byte(sample.Checkpoint), v)
		for b.Loop() {
			proof, err := transparency.DecodeHashes(sample.Proof)
			if err != nil {
				b.Fatal(err)
			}
			if err := transparency.VerifyInclusion(cp, sample.Index, sample.Entry, proof); err != nil {
				b.Fatal(err)
			}
			if _, err := transparency.ParseEntry(sample.Entry); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify-inclusion-only", func(b *testing.B) {
		cp, _, _ := transparency.Open([]byte(sample.Checkpoint), v)
		proof, _ := transparency.DecodeHashes(sample.Proof)
		for b.Loop() {
			if err := transparency.VerifyInclusion(cp, sample.Index, sample.Entry, proof); err != nil {
				b.Fatal(err)
			}
		}
	})
}
