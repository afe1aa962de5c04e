package pushtest

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kanal-server/kanal/messaging/push"
)

// Hang is an answer that never comes: the request is held until the
// client gives up or the test calls Release.
const Hang = -1

// Push is one request the service received.
type Push struct {
	Subscriber string // the subscription's id
	Status     int    // what the service answered (0: hung)
	TTL        string
	Urgency    string
	Topic      string
	Claims     Claims
	VAPIDKey   string // k, base64url
	Payload    []byte // decrypted
	Err        error  // why the push was refused as malformed, if it was
	At         time.Time
}

// Subscriber is a user agent's side of a subscription: the endpoint and
// the keys it would give an application server, and the private key that
// decrypts what arrives.
type Subscriber struct {
	ID       string
	Endpoint string
	Private  *ecdh.PrivateKey
	Auth     []byte
}

// Request is the subscription as a browser's PushSubscription.toJSON().
func (s *Subscriber) Request() *push.SubscriptionRequest {
	enc := base64.RawURLEncoding
	return &push.SubscriptionRequest{Endpoint: s.Endpoint,
		Keys: push.SubscriptionKeys{P256dh: enc.EncodeToString(s.Private.PublicKey().Bytes()), Auth: enc.EncodeToString(s.Auth)}}
}

// Server is the test push service.
type Server struct {
	*httptest.Server

	mu       sync.Mutex
	subs     map[string]*Subscriber
	script   []int // answers for the next requests, in order
	fallback int   // answer once the script is used up
	pushes   []Push
	hanging  int
	delay    time.Duration // before every answer: a slow push service
	release  chan struct{}
	arrived  chan struct{} // closed and replaced on every request
}

// New starts a push service on https://127.0.0.1:port; the test's end
// closes it.
func New(t testing.TB) *Server {
	s := &Server{subs: map[string]*Subscriber{}, fallback: http.StatusCreated,
		release: make(chan struct{}), arrived: make(chan struct{})}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(func() { s.Release(); s.Server.Close() })
	return s
}

// CertPEM is the service's certificate, for a client that must trust it.
func (s *Server) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
}

// Subscribe creates a subscription as a browser's PushManager would.
func (s *Server) Subscribe(t testing.TB) *Subscriber {
	t.Helper()
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var id, auth [16]byte
	rand.Read(id[:])
	rand.Read(auth[:])
	sub := &Subscriber{ID: base64.RawURLEncoding.EncodeToString(id[:]), Private: priv, Auth: auth[:]}
	sub.Endpoint = s.URL + "/push/" + sub.ID
	s.mu.Lock()
	s.subs[sub.ID] = sub
	s.mu.Unlock()
	return sub
}

// Answer makes the next requests get these statuses (or Hang), in order;
// after them the service answers the fallback (201 unless AnswerAlways
// changed it).
func (s *Server) Answer(statuses ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script = append(s.script, statuses...)
}

// AnswerAlways sets the answer once the script is used up.
func (s *Server) AnswerAlways(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fallback = status
}

// Delay makes the service take d before each later answer, as a slow
// push service does.
func (s *Server) Delay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Release lets every hanging request go (they are answered 201) and makes
// later Hang answers hang again.
func (s *Server) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.release)
	s.release = make(chan struct{})
}

// Pushes returns every request received so far.
func (s *Server) Pushes() []Push {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Push(nil), s.pushes...)
}

// Hanging returns how many requests are being held right now.
func (s *Server) Hanging() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hanging
}

// WaitFor waits until cond holds of the pushes received, or fails the
// test after timeout.
func (s *Server) WaitFor(t testing.TB, timeout time.Duration, what string, cond func([]Push) bool) []Push {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ps, arrived := append([]Push(nil), s.pushes...), s.arrived
		s.mu.Unlock()
		if cond(ps) {
			return ps
		}
		select {
		case <-arrived:
		case <-time.After(50 * time.Millisecond): // a hanging request does not change the list
		case <-deadline.C:
			t.Fatalf("push service: %s not seen within %s; received %d requests: %+v", what, timeout, len(ps), ps)
		}
	}
}

// serve handles POST /push/{id} as RFC 8030 section 5 describes.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutPrefix(r.URL.Path, "/push/")
	if r.Method != http.MethodPost || !ok {
		http.Error(w, "not a push resource", http.StatusNotFound)
		return
	}
	s.mu.Lock()
	sub := s.subs[id]
	s.mu.Unlock()
	p := Push{Subscriber: id, TTL: r.Header.Get("TTL"), Urgency: r.Header.Get("Urgency"), Topic: r.Header.Get("Topic"), At: time.Now()}
	status := s.check(r, sub, &p)
	if status == 0 {
		s.mu.Lock()
		if len(s.script) > 0 {
			status, s.script = s.script[0], s.script[1:]
		} else {
			status = s.fallback
		}
		release, delay := s.release, s.delay
		if status == Hang {
			s.hanging++
		}
		s.mu.Unlock()
		if delay > 0 && status != Hang {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				status = 0
			}
		}
		if status == Hang {
			select {
			case <-release:
				status = http.StatusCreated
			case <-r.Context().Done():
				status = 0
			}
			s.mu.Lock()
			s.hanging--
			s.mu.Unlock()
		}
	}
	p.Status = status
	s.mu.Lock()
	s.pushes = append(s.pushes, p)
	close(s.arrived)
	s.arrived = make(chan struct{})
	s.mu.Unlock()
	switch status {
	case 0:
		// The client gave up on a held request: drop the connection
		// without an answer. Returning would send net/http's implicit
		// 200, which can still reach a client that is shutting down and
		// read as a delivered push.
		panic(http.ErrAbortHandler)
	case http.StatusCreated:
		w.Header().Set("Location", "/message/"+strconv.Itoa(len(s.Pushes())))
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(status)
}

// check validates one push and decrypts its payload; a malformed push is
// answered 400 (or 401 for a bad token, 404 for an unknown subscription).
func (s *Server) check(r *http.Request, sub *Subscriber, p *Push) int {
	if sub == nil {
		return http.StatusNotFound
	}
	fail := func(status int, err error) int { p.Err = err; return status }
	claims, key, err := VerifyVAPID(r.Header.Get("Authorization"), sub.Endpoint, time.Now())
	if err != nil {
		return fail(http.StatusUnauthorized, err)
	}
	p.Claims, p.VAPIDKey = claims, base64.RawURLEncoding.EncodeToString(key)
	if _, err := strconv.Atoi(p.TTL); err != nil {
		return fail(http.StatusBadRequest, errorString("TTL header missing or not a number"))
	}
	if r.Header.Get("Content-Encoding") != "aes128gcm" {
		return fail(http.StatusBadRequest, errorString("Content-Encoding is not aes128gcm"))
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4097))
	if err != nil || len(body) > 4096 {
		return fail(http.StatusRequestEntityTooLarge, errorString("payload over 4096 bytes"))
	}
	if p.Payload, err = Decrypt(body, sub.Private, sub.Auth); err != nil {
		return fail(http.StatusBadRequest, err)
	}
	return 0
}

type errorString string

func (e errorString) Error() string { return "pushtest: " + string(e) }
