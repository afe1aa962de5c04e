package client_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/client"
)

// TestSendAnswerLostOnKeptAliveConnection: the answer to a send over HTTP
// is lost because its kept-alive connection closes after kanald stored
// the send. The SDK's Send still succeeds — the send carries its
// client_id as Idempotency-Key, so the HTTP transport sends it again on a
// new connection and gets the first answer — and the message is stored
// and delivered once. The same lost answer for a POST without the header
// is an error to the caller, which is what the header changes.
func TestSendAnswerLostOnKeptAliveConnection(t *testing.T) {
	engines(t, func(t *testing.T, postgres bool) {
		s := startKanald(t, postgres)
		srv := s.Server
		alice := signUp(t, s, "alice@example.org", true)
		bob := signUp(t, s, "bob@example.org", false)
		p := kanaldtest.NewAnswerLoser(t, srv.URL, func(r *http.Request) bool {
			return r.Method == http.MethodPost && r.URL.Path == "/v1/messages"
		})
		a := newPhone(t, "alice", alice, p.URL, client.NewMemoryStore())
		b := newPhone(t, "bob", bob, srv.URL, client.NewMemoryStore())
		b.connect(context.Background())
		defer b.disconnect()
		toBob := client.Peer{AccountID: bob.AccountID}
		ctx := context.Background()

		p.Arm()
		const n = 3
		for i := range n {
			if _, err := a.sdk.Send(ctx, toBob, textMsg(t, fmt.Sprint("m", i))); err != nil {
				t.Fatalf("send m%d: %v", i, err)
			}
		}
		if got := p.Lost(); got != 1 {
			t.Fatalf("%d answers lost, want 1: the test did not lose one", got)
		}
		got := b.waitTexts(n, fromDevice(alice.DeviceID))
		if strings.Join(got, " ") != "m0 m1 m2" {
			t.Fatalf("bob got %q, want m0 m1 m2 once each", got)
		}
		b.checkNoDuplicatesOrErrors()
		d := openServerDB(t, s, srv)
		var rows int
		if err := d.QueryRow(ctx, `SELECT COUNT(*) FROM messaging_sends WHERE sender_device = $1`, alice.DeviceID).Scan(&rows); err != nil && err != sql.ErrNoRows {
			t.Fatal(err)
		}
		if rows != n {
			t.Fatalf("%d sends stored for alice, want %d", rows, n)
		}

		// The control: the same loss for a POST the transport may not
		// repeat reaches the caller. One keep-alive connection, a first
		// request to reuse it, then a send without the header.
		hc := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
		defer hc.CloseIdleConnections()
		post := func(h http.Header) error {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.URL+"/v1/messages", strings.NewReader(`{}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+alice.Token)
			for k, vs := range h {
				req.Header[k] = vs
			}
			resp, err := hc.Do(req)
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			return resp.Body.Close()
		}
		if err := post(nil); err != nil {
			t.Fatal(err)
		}
		p.Arm()
		if err := post(nil); err == nil {
			t.Fatal("a lost answer without Idempotency-Key was not an error; the proxy lost nothing")
		}
		if err := post(nil); err != nil { // a fresh connection
			t.Fatal(err)
		}
		p.Arm()
		if err := post(http.Header{messaging.IdempotencyKeyHeader: {""}}); err != nil {
			t.Fatalf("a lost answer with Idempotency-Key was not asked again: %v", err)
		}
		if got := p.Lost(); got != 3 {
			t.Fatalf("%d answers lost in all, want 3", got)
		}
	})
}
