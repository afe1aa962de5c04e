package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/messaging"
	mclient "github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
)

// TestSendOverloadedAnswer: POST /v1/messages answered 503 overloaded, as
// docs/openapi.yaml describes it (the validating proxy checks the answer).
// kanald takes one write in its group commit (KANAL_SEND_QUEUE_MAX=1); a
// send of alice's waits in it while the test holds the database's write
// lock, and every other send meanwhile is refused at once with
// Retry-After. Once the lock goes, alice's send is stored.
func TestSendOverloadedAnswer(t *testing.T) {
	srv := kanaldtest.Start(t, bin.kanald, "KANAL_SEND_QUEUE_MAX=1")
	ctx := context.Background()
	var sdks []*mclient.Client
	var devs []*kanaldtest.Device
	for _, email := range []string{"alice@example.org", "bob@example.org"} {
		_, key, _ := ed25519.GenerateKey(rand.Reader)
		d := srv.SignUp(t, email, key)
		c := d.SDK(t, srv.URL, mclient.NewMemoryStore())
		if _, err := c.Publish(ctx); err != nil {
			t.Fatal(err)
		}
		sdks, devs = append(sdks, c), append(devs, d)
	}
	alice, bob := sdks[0], devs[1]
	msg := func(text string) *kind.Message {
		m, err := kind.New(mclient.NewMessageID(), time.Now(), &kind.TextBody{Text: text})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if _, err := alice.Send(ctx, mclient.Peer{AccountID: bob.AccountID}, msg("first")); err != nil {
		t.Fatal(err)
	}

	d, err := db.Open(ctx, "sqlite:"+filepath.Join(srv.DataDir, "kanal.db"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	held, stop, locked := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		locked <- d.Tx(ctx, func(*sql.Tx) error { close(held); <-stop; return nil })
	}()
	<-held
	sent := make(chan error, 1)
	go func() {
		_, err := alice.Send(ctx, mclient.Peer{AccountID: bob.AccountID}, msg("waits in the commit"))
		sent <- err
	}()

	// A send with no envelopes, admitted, is answered 409 stale-devices
	// and stores nothing; refused, 503.
	body, _ := json.Marshal(messaging.SendRequest{To: messaging.SendTo{AccountID: bob.AccountID}, ClientID: "overloaded-1",
		Class: "message", Envelopes: []messaging.SendEnvelope{}})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/messages", strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+devs[0].Token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			var p struct {
				Type       string `json:"type"`
				RetryAfter int    `json:"retry_after"`
			}
			ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
			if json.Unmarshal(b, &p) != nil || p.Type != string(messaging.TypeOverloaded) || ra < 1 || p.RetryAfter != ra {
				t.Fatalf("503 %q (Retry-After %q)", b, resp.Header.Get("Retry-After"))
			}
			break
		}
		if resp.StatusCode != http.StatusConflict || time.Now().After(deadline) {
			t.Fatalf("while a send waits in the commit: %d %s", resp.StatusCode, b)
		}
	}
	close(stop)
	if err := <-locked; err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatalf("the send that waited: %v", err)
	}
}
