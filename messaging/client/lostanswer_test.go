package client_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/client"
)

// answerLoser is an HTTP/1.1 proxy that loses one answer. While armed, the
// first POST /v1/messages that comes on a connection already used for
// another request is passed to the server, the server's answer is read in
// full, and the client's connection is closed instead of being given it:
// what a client sees when a kept-alive connection dies under a request
// after the server has acted on it (a proxy or load balancer restarting,
// an idle timeout racing the request, a mobile network handing over).
type answerLoser struct {
	url    string
	target string
	armed  atomic.Bool
	lost   atomic.Int32
}

func newAnswerLoser(t *testing.T, base string) *answerLoser {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &answerLoser{url: "http://" + ln.Addr().String(), target: u.Host}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *answerLoser) serve(c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	br, ubr := bufio.NewReader(c), bufio.NewReader(up)
	for n := 0; ; n++ {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if err := req.Write(up); err != nil {
			return
		}
		resp, err := http.ReadResponse(ubr, req)
		if err != nil {
			return
		}
		if n > 0 && req.Method == http.MethodPost && req.URL.Path == "/v1/messages" && p.armed.CompareAndSwap(true, false) {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			p.lost.Add(1)
			return // the client's connection closes with no answer
		}
		err = resp.Write(c)
		resp.Body.Close()
		if err != nil {
			return
		}
	}
}

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
		p := newAnswerLoser(t, srv.URL)
		a := newPhone(t, "alice", alice, p.url, client.NewMemoryStore())
		b := newPhone(t, "bob", bob, srv.URL, client.NewMemoryStore())
		b.connect(context.Background())
		defer b.disconnect()
		toBob := client.Peer{AccountID: bob.AccountID}
		ctx := context.Background()

		p.armed.Store(true)
		const n = 3
		for i := range n {
			if _, err := a.sdk.Send(ctx, toBob, textMsg(t, fmt.Sprint("m", i))); err != nil {
				t.Fatalf("send m%d: %v", i, err)
			}
		}
		if got := p.lost.Load(); got != 1 {
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
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.url+"/v1/messages", strings.NewReader(`{}`))
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
		p.armed.Store(true)
		if err := post(nil); err == nil {
			t.Fatal("a lost answer without Idempotency-Key was not an error; the proxy lost nothing")
		}
		if err := post(nil); err != nil { // a fresh connection
			t.Fatal(err)
		}
		p.armed.Store(true)
		if err := post(http.Header{messaging.IdempotencyKeyHeader: {""}}); err != nil {
			t.Fatalf("a lost answer with Idempotency-Key was not asked again: %v", err)
		}
		if got := p.lost.Load(); got != 3 {
			t.Fatalf("%d answers lost in all, want 3", got)
		}
	})
}
