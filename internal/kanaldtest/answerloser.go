package kanaldtest

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
)

// AnswerLoser is an HTTP/1.1 proxy in front of a server that loses one
// answer when armed: the first request that Match accepts and that comes
// on a connection already used for another request is passed to the
// server, the server's answer is read in full, and the client's
// connection is closed instead of being given it. That is what a client
// sees when a kept-alive connection dies under a request after the server
// has acted on it (a proxy or load balancer restarting, an idle timeout
// racing the request, a mobile network handing over).
type AnswerLoser struct {
	// URL is the proxy's base URL, for the client.
	URL    string
	target string
	match  func(*http.Request) bool
	armed  atomic.Bool
	anyNew atomic.Bool // armed for a request on a new connection too
	lost   atomic.Int32
}

// NewAnswerLoser starts an AnswerLoser in front of base (an http:// URL)
// for the requests match accepts, unarmed. It stops with the test.
func NewAnswerLoser(t testing.TB, base string, match func(*http.Request) bool) *AnswerLoser {
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
	p := &AnswerLoser{URL: "http://" + ln.Addr().String(), target: u.Host, match: match}
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

// Arm makes the proxy lose the next answer it may.
func (p *AnswerLoser) Arm() { p.anyNew.Store(false); p.armed.Store(true) }

// ArmAny makes the proxy lose the next answer Match accepts, also the
// first on a new connection: what a client sees when the network fails
// after the request reached the server, whatever connection it took.
func (p *AnswerLoser) ArmAny() { p.anyNew.Store(true); p.armed.Store(true) }

// Lost returns how many answers the proxy has lost.
func (p *AnswerLoser) Lost() int { return int(p.lost.Load()) }

func (p *AnswerLoser) serve(c net.Conn) {
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
		if (n > 0 || p.anyNew.Load()) && p.match(req) && p.armed.CompareAndSwap(true, false) {
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
