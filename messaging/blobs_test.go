package messaging_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/messaging"
)

func (e *sendEnv) raw(dev *device, method, path, contentType string, body []byte) (int, http.Header, []byte) {
	e.t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), method, e.ts.URL+path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if dev != nil {
		req.Header.Set("Authorization", "Test "+dev.account+" "+dev.id)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func TestBlobs(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		e := newSendEnv(t, d, 0, false)
		alice := e.enroll("alice", "alice-phone", true)
		bob := e.enroll("bob", "bob-phone", false)
		count := func() (n int) {
			d.QueryRow(context.Background(), `SELECT COUNT(*) FROM messaging_blobs`).Scan(&n)
			return n
		}

		data := bytes.Repeat([]byte("verschlüsselt "), 1000)
		st, _, body := e.raw(alice, "POST", "/v1/blobs", "application/octet-stream", data)
		if st != 201 {
			t.Fatalf("upload: %d %s", st, body)
		}
		var b messaging.Blob
		json.Unmarshal(body, &b)
		sum := sha256.Sum256(data)
		if b.Size != int64(len(data)) || b.SHA256 != hex.EncodeToString(sum[:]) || b.ExpiresAt.IsZero() {
			t.Fatalf("blob %+v", b)
		}
		// Anyone with a session and the id fetches it (the id travels only
		// inside end-to-end messages); without a session, nobody.
		st, h, got := e.raw(bob, "GET", "/v1/blobs/"+b.BlobID, "", nil)
		if st != 200 || !bytes.Equal(got, data) || h.Get("ETag") != `"`+b.SHA256+`"` {
			t.Fatalf("fetch: %d %d bytes %q", st, len(got), h.Get("ETag"))
		}
		if st, _, _ := e.raw(nil, "GET", "/v1/blobs/"+b.BlobID, "", nil); st != 401 {
			t.Fatalf("fetch without a session: %d", st)
		}

		// Bad input stores nothing.
		before := count()
		for _, tc := range []struct {
			name, ct string
			body     []byte
			status   int
			typ      web.ProblemType
		}{
			{"empty", "application/octet-stream", nil, 400, web.TypeValidation},
			{"json", "application/json", []byte(`{"x":1}`), 415, web.TypeUnsupportedMedia},
			{"too large", "application/octet-stream", make([]byte, messaging.MaxBlob+1), 413, web.TypeTooLarge},
		} {
			st, _, body := e.raw(alice, "POST", "/v1/blobs", tc.ct, tc.body)
			var p map[string]any
			json.Unmarshal(body, &p)
			if st != tc.status || p["type"] != string(tc.typ) {
				t.Fatalf("%s: %d %s", tc.name, st, body)
			}
		}
		if after := count(); after != before {
			t.Fatalf("bad uploads stored %d blobs", after-before)
		}
		// Past the retention, the blob is gone.
		*e.now = e.now.Add(31 * 24 * time.Hour)
		if st, _, _ := e.raw(bob, "GET", "/v1/blobs/"+b.BlobID, "", nil); st != 404 {
			t.Fatalf("expired blob fetched: %d", st)
		}
		for _, id := range []string{"b_AAAAAAAAAAAAAAAAAAAAAA", "../etc/passwd", "x"} {
			if st, _, _ := e.raw(bob, "GET", "/v1/blobs/"+id, "", nil); st != 404 {
				t.Fatalf("fetch %q: %d", id, st)
			}
		}
	})
}
