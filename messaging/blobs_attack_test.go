package messaging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/messaging"
)

// fillQuota stores a blob row for account that leaves free bytes of its
// quota, as earlier uploads would have.
func fillQuota(t *testing.T, d *db.DB, account string, free int64) {
	t.Helper()
	if _, err := d.Exec(context.Background(), `INSERT INTO messaging_blobs (id, uploader, size, sha256, data, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, "b_filler"+account, account, messaging.MaxBlobBytesPerAccount-free,
		"00", []byte{0}, testNow.Unix(), testNow.Add(24*time.Hour).Unix()); err != nil {
		t.Fatal(err)
	}
}

// blobBytes is what account's blobs take, pending uploads included.
func blobBytes(t *testing.T, d *db.DB, account string) (n int64, rows int) {
	t.Helper()
	if err := d.QueryRow(context.Background(), `SELECT COALESCE(SUM(size), 0), COUNT(*) FROM messaging_blobs WHERE uploader = $1`, account).Scan(&n, &rows); err != nil {
		t.Fatal(err)
	}
	return n, rows
}

// countingReader counts the bytes the server takes from an upload.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// upload runs one upload through the service's real handler in-process,
// so that the bytes it reads are counted exactly (no socket buffers in
// between).
func (e *sendEnv) upload(dev *device, body io.Reader, length int64) (*httptest.ResponseRecorder, map[string]any) {
	req := httptest.NewRequest("POST", "/v1/blobs", body)
	req.ContentLength = length
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Authorization", "Test "+dev.account+" "+dev.id)
	rec := httptest.NewRecorder()
	e.ts.Config.Handler.ServeHTTP(rec, req)
	var p map[string]any
	json.Unmarshal(rec.Body.Bytes(), &p)
	return rec, p
}

// TestAttackBlobQuotaRace: a citizen with a session uploads many blobs at
// once, each of which fits in what is left of the quota, so that every
// quota check passes before any upload is stored. The quota holds.
func TestAttackBlobQuotaRace(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		e := newSendEnv(t, d, 0, false)
		alice := e.enroll("alice", "alice-phone", true)
		const racers, size, fit = 40, 256 << 10, 10
		fillQuota(t, d, "alice", fit*size)
		data := bytes.Repeat([]byte{7}, size)
		statuses := make([]int, racers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				rec, _ := e.upload(alice, bytes.NewReader(data), size)
				statuses[i] = rec.Code
			}()
		}
		close(start)
		wg.Wait()
		won := 0
		for _, st := range statuses {
			switch st {
			case 201:
				won++
			case 507:
			default:
				t.Fatalf("an upload got %d", st)
			}
		}
		used, _ := blobBytes(t, d, "alice")
		if won != fit || used != messaging.MaxBlobBytesPerAccount {
			t.Fatalf("%d of %d concurrent uploads stored, %d of %d bytes used; want %d and the quota exactly", won, racers, used, messaging.MaxBlobBytesPerAccount, fit)
		}
	})
}

// TestAttackBlobOverQuotaNotRead: a citizen whose quota is nearly used up
// uploads a blob far larger than what is left. The upload is refused from
// its declared length before the body is read, and nothing is stored; a
// body that stops short of its declared length stores nothing either, and
// an upload that declares no length is refused.
func TestAttackBlobOverQuotaNotRead(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		e := newSendEnv(t, d, 0, false)
		alice := e.enroll("alice", "alice-phone", true)
		fillQuota(t, d, "alice", 1<<20)
		usedBefore, rowsBefore := blobBytes(t, d, "alice")

		const big = 20 << 20
		body := &countingReader{r: bytes.NewReader(make([]byte, big))}
		rec, p := e.upload(alice, body, big)
		if rec.Code != 507 || p["type"] != string(messaging.TypeQuotaExceeded) {
			t.Fatalf("over-quota upload: %d %s", rec.Code, rec.Body)
		}
		if n := body.n.Load(); n > 0 {
			t.Fatalf("the server read %d of %d bytes of an upload it had to refuse", n, big)
		}

		short := &countingReader{r: bytes.NewReader(make([]byte, 100))}
		if rec, _ := e.upload(alice, short, 4096); rec.Code != 400 {
			t.Fatalf("short body: %d %s", rec.Code, rec.Body)
		}
		if rec, p := e.upload(alice, bytes.NewReader(make([]byte, 100)), -1); rec.Code != http.StatusLengthRequired || p["type"] == nil {
			t.Fatalf("upload without a length: %d %s", rec.Code, rec.Body)
		}
		if used, rows := blobBytes(t, d, "alice"); used != usedBefore || rows != rowsBefore {
			t.Fatalf("refused uploads stored something: %d bytes in %d rows, before %d in %d", used, rows, usedBefore, rowsBefore)
		}
	})
}
