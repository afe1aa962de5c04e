package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/internal/binframe"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/mailbox"
	"github.com/kanal-server/kanal/messaging/mailbox/wire"
)

// netPool hands out HTTP clients bound to loopback source addresses
// 127.0.0.1 … 127.0.0.N, round robin: one source address has about 28,000
// ephemeral ports towards one server port, so many idle connections need
// several.
type netPool struct {
	clients []*http.Client
	sources []*net.TCPAddr
	next    atomic.Uint64
}

// sourceFor is the source address of the i-th connection of a peer.
func (p *netPool) sourceFor(i int) *net.TCPAddr { return p.sources[i%len(p.sources)] }

func newNetPool(sources int) *netPool {
	p := &netPool{}
	for i := range max(sources, 1) {
		src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i))}
		p.sources = append(p.sources, src)
		d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, LocalAddr: src}
		tr := &http.Transport{DialContext: d.DialContext, MaxIdleConns: 0, MaxIdleConnsPerHost: 4096,
			IdleConnTimeout: 90 * time.Second, ForceAttemptHTTP2: false}
		p.clients = append(p.clients, &http.Client{Transport: tr, Timeout: 60 * time.Second})
	}
	return p
}

func (p *netPool) client() *http.Client {
	return p.clients[int(p.next.Add(1)-1)%len(p.clients)]
}

// device is one simulated device: an account with one enrolled,
// logged-in device, its E2E state in the SDK, and its stream.
type device struct {
	n       int
	email   string
	account string
	id      string
	base    string // the kanald node it talks to
	key     crypto.Signer
	cert    []byte
	token   string
	hc      *http.Client
	ident   *idclient.Client
	sdk     *client.Client
	roots   *x509.CertPool // the deployment CA

	ws         *websocket.Conn // the open stream; replaced under wmu on a reconnect
	bin        bool            // the stream speaks binary frames (kanal.bin.v1); set with ws
	markSynced func()          // closes synced, once
	skeys      *senderKeys     // group scenario
	synced     chan struct{}
	hello      chan string // senders of handshake messages received
	sendSeq    atomic.Uint64

	// wsSend sends over the stream ({"type":"send"} frames) instead of
	// POST /v1/messages; pending holds the sends waiting for their answer.
	wsSend bool
	// binHTTP posts sends in binary form (messaging.BinarySendType) with
	// -frames binary, until the server answers 415: then JSON.
	binHTTP atomic.Bool
	wmu     sync.Mutex
	pmu     sync.Mutex
	pending map[string]chan error

	// seen holds the ids of the envelopes the device took (overload and
	// broadcast scenarios, whose devices reconnect when the server closes
	// their stream): after a reconnect the server sends again what was not
	// acknowledged yet, and such a copy is acknowledged again without
	// being decrypted or counted a second time, as the SDK's callers do.
	smu  sync.Mutex
	seen map[string]bool
}

// provisionStats times the provisioning phases.
type provisionStats struct {
	Devices   int           `json:"devices"`
	Took      time.Duration `json:"-"`
	TookS     float64       `json:"took_s"`
	PerSecond float64       `json:"devices_per_s"`
	// ServerCPUms is the kanald CPU (all nodes) per provisioned device, in
	// milliseconds: what each sign-up costs the server, whatever the load.
	ServerCPUms float64 `json:"server_cpu_ms_per_device,omitempty"`
}

// provision signs up n accounts through the real API, concurrently: sign-up
// mail, the code read from the mail directory, a P-256 device key enrolled
// with a certificate request, a device-key login (level low), and an SDK
// client. publish also publishes each device's prekeys.
func (r *runner) provision(ctx context.Context, n int, label string, publish bool) ([]*device, error) {
	return r.provisionThen(ctx, n, label, publish, nil)
}

// provisionThen is provision with then run on each device as soon as it
// is provisioned (nil: nothing), by the same worker.
func (r *runner) provisionThen(ctx context.Context, n int, label string, publish bool, then func(*device) error) ([]*device, error) {
	start := time.Now()
	cpu0, _ := r.serverSample()
	out := make([]*device, n)
	work := make(chan int)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	var done atomic.Int64
	stopProgress := r.progress(func() string {
		return fmt.Sprintf("provisioning %s: %d/%d devices", label, done.Load(), n)
	})
	for range max(r.o.provisionWorkers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				d, err := r.newDevice(ctx, label, i, publish)
				if err == nil && then != nil {
					err = then(d)
				}
				if err != nil {
					select {
					case errc <- err:
					default:
					}
					continue
				}
				out[i] = d
				done.Add(1)
			}
		}()
	}
feed:
	for i := range n {
		select {
		case work <- i:
		case err := <-errc:
			errc <- err
			break feed
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	stopProgress()
	select {
	case err := <-errc:
		return nil, fmt.Errorf("provision %s: %w", label, err)
	default:
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	took := time.Since(start)
	cpu1, _ := r.serverSample()
	r.res.Provisioning = append(r.res.Provisioning, provisionStats{Devices: n, Took: took, TookS: took.Seconds(),
		PerSecond: float64(n) / took.Seconds(), ServerCPUms: float64((cpu1 - cpu0).Microseconds()) / 1000 / float64(n)})
	return out, nil
}

func (r *runner) newDevice(ctx context.Context, label string, i int, publish bool) (*device, error) {
	return r.newDeviceWith(ctx, label, i, publish, "")
}

// newDeviceWith is newDevice for an account with password, if not empty:
// its device certificate and its login are then of level substantial.
func (r *runner) newDeviceWith(ctx context.Context, label string, i int, publish bool, password string) (*device, error) {
	d := &device{n: i, base: r.cl.urls[i%len(r.cl.urls)], hc: r.net.client(),
		synced: make(chan struct{}), hello: make(chan string, 16),
		wsSend: r.o.transport == "ws", pending: map[string]chan error{}}
	d.binHTTP.Store(r.o.frames == "binary")
	d.markSynced = sync.OnceFunc(func() { close(d.synced) })
	d.seen = r.seenMap()
	d.email = fmt.Sprintf("bench-%s-%s-%d@example.org", r.runID, label, i)
	ic := idclient.New(d.base, d.hc)
	if err := ic.Signup(ctx, d.email); err != nil {
		return nil, fmt.Errorf("sign-up: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	code, err := r.mail.code(cctx, d.email)
	cancel()
	if err != nil {
		return nil, err
	}
	v, err := ic.VerifySignup(ctx, d.email, code)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	d.account = v.AccountID
	if password != "" {
		if err := ic.WithToken(v.SetupToken).SetPassword(ctx, password, ""); err != nil {
			return nil, fmt.Errorf("password: %w", err)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	d.key = key
	enr, err := ic.WithToken(v.SetupToken).EnrollDevice(ctx, "bench", key)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	d.id, d.cert = enr.DeviceID, []byte(enr.Certificate)
	sess, err := ic.Login(ctx, enr.DeviceID, key, password)
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	d.token = sess.Token
	d.ident = ic.WithToken(sess.Token)
	if r.caPEM.Load() == nil {
		r.caPEM.Store(&enr.CA)
	}
	blk, _ := pem.Decode([]byte(enr.CA))
	if blk == nil {
		return nil, errors.New("enroll: no CA certificate")
	}
	caCert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, err
	}
	d.roots = x509.NewCertPool()
	d.roots.AddCert(caCert)
	d.sdk, err = client.New(client.Options{BaseURL: d.base, HTTPClient: d.hc, Token: d.token, AccountID: d.account,
		DeviceID: d.id, DeviceKey: key, DeviceCertificate: d.cert, CA: caCert, Store: client.NewMemoryStore()})
	if err != nil {
		return nil, err
	}
	if publish {
		if _, err := d.sdk.Publish(ctx); err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
	}
	return d, nil
}

// Payload layout inside the encryption: one byte of kind, the intended
// send time (Unix nanoseconds), then padding up to the message size.
const (
	kindHello    = 0
	kindMeasured = 1
	payloadHead  = 9
)

// seenMap is a device's record of the envelopes it took, in the
// scenarios whose devices reconnect (device.seen); nil in the others.
func (r *runner) seenMap() map[string]bool {
	if r.o.scenario == "overload" || r.o.scenario == "broadcast" {
		return map[string]bool{}
	}
	return nil
}

func payload(kind byte, intended time.Time, size int) []byte {
	b := make([]byte, max(size, payloadHead))
	b[0] = kind
	binary.BigEndian.PutUint64(b[1:], uint64(intended.UnixNano()))
	return b
}

// envelopeHandler is told about every envelope a device decrypted.
type envelopeHandler func(d *device, sender string, kind byte, intended time.Time, received time.Time)

// connect opens the device's stream and reads it until ctx ends: each
// envelope is decrypted with the SDK and acknowledged, frame by frame.
func (r *runner) connect(ctx context.Context, d *device, h envelopeHandler) error {
	wsURL := "ws" + strings.TrimPrefix(d.base, "http") + "/v1/stream"
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	protocols := []string{"kanal"}
	if r.o.frames == "binary" {
		protocols = []string{binframe.Subprotocol, "kanal"}
	}
	ws, resp, err := websocket.Dial(dctx, wsURL, &websocket.DialOptions{HTTPClient: d.hc, Subprotocols: protocols,
		HTTPHeader: http.Header{"Authorization": {"Bearer " + d.token}}})
	cancel()
	if err != nil {
		if resp != nil {
			return fmt.Errorf("stream of %s: %d %w", d.id, resp.StatusCode, err)
		}
		return fmt.Errorf("stream of %s: %w", d.id, err)
	}
	ws.SetReadLimit(mailbox.MaxFrameBytes * 2)
	d.wmu.Lock()
	d.ws, d.bin = ws, strings.EqualFold(ws.Subprotocol(), binframe.Subprotocol)
	d.wmu.Unlock()
	go r.readLoop(ctx, d, ws, h)
	return nil
}

// reconnect opens the device's stream again after the server closed it,
// as the SDK's LiveStream does, until it succeeds or ctx ends: after a
// wait from 250 ms doubling to 30 s, each drawn between half and the
// whole, so that streams the server closed together do not all come back
// at once.
func (r *runner) reconnect(ctx context.Context, d *device, h envelopeHandler) {
	for step := 250 * time.Millisecond; ctx.Err() == nil; step = min(2*step, 30*time.Second) {
		wait := step/2 + mrand.N(step/2+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if err := r.connect(ctx, d, h); err == nil {
			return
		}
		r.reconnects.add("reconnect failed, retried")
	}
}

func (r *runner) readLoop(ctx context.Context, d *device, ws *websocket.Conn, h envelopeHandler) {
	defer d.markSynced()
	frames := make(chan envelopesFrame, mailbox.MaxInFlight)
	defer close(frames)
	go r.process(ctx, d, frames, h)
	for {
		typ, buf, err := readFrame(ctx, ws)
		read := time.Now()
		if err != nil {
			if ctx.Err() == nil {
				status := websocket.CloseStatus(err).String()
				if d.seen != nil {
					// The overload and broadcast scenarios' devices
					// reconnect, as clients do; a close is counted, not
					// an error.
					r.reconnects.add("stream closed: " + status)
					go r.reconnect(ctx, d, h)
					return
				}
				r.errs.add("stream closed: " + status)
			}
			return
		}
		var f streamFrame
		if typ == websocket.MessageBinary {
			err = f.decodeBinary(*buf)
		} else {
			err = json.Unmarshal(*buf, &f)
		}
		if err != nil || f.Type != "envelopes" || typ != websocket.MessageBinary {
			// Nothing decoded from it points into the buffer: binary
			// envelopes alone keep their ciphertexts there.
			frameBufs.Put(buf)
			buf = nil
		}
		if err != nil {
			r.errs.add("stream: bad frame")
			continue
		}
		switch f.Type {
		case "synced":
			// The backlog's envelopes frames before it may still wait
			// for process: the device is synced once process has taken
			// them, so that a measurement begun at the sync does not
			// count a backlog's envelope (a kept broadcast's earlier
			// announcement) as one of its own.
			select {
			case frames <- envelopesFrame{synced: true}:
			case <-ctx.Done():
				return
			}
			continue
		case "sent", "send_failed":
			var err error
			if p := f.Problem; f.Type == "send_failed" && p != nil && (p.Status == http.StatusTooManyRequests || p.Type == string(messaging.TypeOverloaded)) {
				err = &errRateLimited{after: time.Duration(max(p.RetryAfter, 1)) * time.Second, overloaded: p.Status == http.StatusServiceUnavailable}
			} else if f.Type == "send_failed" {
				err = fmt.Errorf("send: %d %s", f.Problem.Status, strings.TrimPrefix(f.Problem.Type, "urn:kanal:problem:"))
			}
			d.answer(f.Ref, err)
			continue
		case "envelopes":
		default:
			r.errs.add("stream frame " + f.Type)
			continue
		}
		// Decrypting is the device's work, not the socket's: a device
		// that decrypted in its read loop would stop reading under load,
		// and the server closes a socket that takes no frames for
		// mailbox.WriteTimeout. The server's in-flight limit bounds what
		// waits here.
		select {
		case frames <- envelopesFrame{envs: f.Envelopes, buf: buf, read: read}:
		case <-ctx.Done():
			return
		}
	}
}

// frameBufs holds the buffers the devices read stream frames into, shared
// by all of them: a 3.2 KB announcement read with websocket.Conn.Read
// (io.ReadAll) cost five allocations, a zeroed copy and the collector's
// work for each follower, a third of the load generator's CPU in a
// broadcast. A buffer goes back once its frame is handled.
var frameBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// readFrame reads the stream's next message into a buffer of frameBufs.
func readFrame(ctx context.Context, ws *websocket.Conn) (websocket.MessageType, *[]byte, error) {
	typ, rd, err := ws.Reader(ctx)
	if err != nil {
		return 0, nil, err
	}
	bp := frameBufs.Get().(*[]byte)
	b := (*bp)[:0]
	for {
		if len(b) == cap(b) {
			b = slices.Grow(b, cap(b))
		}
		n, err := rd.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			*bp = b
			return typ, bp, nil
		}
		if err != nil {
			*bp = b
			frameBufs.Put(bp)
			return 0, nil, err
		}
	}
}

// envelopesFrame is an envelopes frame on its way from the read loop to
// process; buf, if not nil, holds the ciphertexts and goes back to
// frameBufs once they are handled; read is when the read loop had it.
type envelopesFrame struct {
	envs []mailbox.Envelope
	buf  *[]byte
	read time.Time
	// synced marks the place of the stream's "synced" frame: process
	// marks the device synced when it gets there.
	synced bool
}

// process decrypts the frames the read loop hands over and acknowledges
// them as the SDK's Stream.Receive does: gathered, in one ack frame
// client.AckDelay after the first, or at once when client.AckAtOnce wait.
func (r *runner) process(ctx context.Context, d *device, frames <-chan envelopesFrame, h envelopeHandler) {
	var ids []string
	var due <-chan time.Time // the timer's channel while ids wait
	timer := time.NewTimer(client.AckDelay)
	timer.Stop() // Go 1.23 timers: a stopped timer's channel holds nothing
	defer timer.Stop()
	for {
		select {
		case fr, ok := <-frames:
			if !ok {
				return
			}
			if fr.synced {
				d.markSynced()
				continue
			}
			ids = r.take(ctx, d, fr, h, ids)
			if len(ids) < client.AckAtOnce {
				if due == nil {
					timer.Reset(client.AckDelay)
					due = timer.C
				}
				continue
			}
			timer.Stop()
		case <-due:
		}
		due = nil
		if err := d.writeAck(ctx, ids); err != nil {
			switch {
			case ctx.Err() != nil:
			case d.seen != nil:
				// The stream closed under it; the server sends these
				// envelopes again after the reconnect.
				r.reconnects.add("ack on a closed stream")
			default:
				r.errs.add("ack failed")
			}
			return
		}
		ids = ids[:0]
	}
}

// take decrypts and checks one frame's envelopes, hands each to h, and
// returns ids with theirs appended.
func (r *runner) take(ctx context.Context, d *device, fr envelopesFrame, h envelopeHandler, ids []string) []string {
	for _, e := range fr.envs {
		ids = append(ids, e.ID)
		if e.Sender == messaging.NoticeSender {
			continue // the server's own word, such as a group change
		}
		if d.seen != nil {
			d.smu.Lock()
			again := d.seen[e.ID]
			d.seen[e.ID] = true
			d.smu.Unlock()
			if again {
				r.redelivered.Add(1)
				continue
			}
		}
		if e.Class == mailbox.ClassBroadcast {
			if err := r.announcement(d, &e); err != nil {
				r.errs.add("announcement refused: " + errKind(err))
				continue
			}
			h(d, e.Sender, kindMeasured, time.Unix(0, r.posted.Load()), time.Now())
			continue
		}
		pt, err := d.open(ctx, &e)
		if err != nil {
			if ctx.Err() == nil {
				r.errs.add("decrypt failed: " + errKind(err))
			}
			continue
		}
		if len(pt) < payloadHead {
			r.errs.add("short payload")
			continue
		}
		if pt[0] == kindDistribution {
			if err := d.acceptDistribution(e.Sender, pt[payloadHead:]); err != nil {
				r.errs.add("sender key: " + errKind(err))
			}
			r.distributions.Add(1)
			continue
		}
		intended := time.Unix(0, int64(binary.BigEndian.Uint64(pt[1:])))
		if pt[0] == kindOverload && r.track != nil {
			r.track.delivered(e.Sender, pt, intended, time.Now())
			continue
		}
		received := time.Now()
		if pt[0] == kindMeasured && !e.ServerTime.IsZero() {
			if sp := r.split.Load(); sp != nil {
				sp.Record(intended, e.ServerTime, fr.read, received)
			}
		}
		h(d, e.Sender, pt[0], intended, received)
	}
	if fr.buf != nil {
		// Nothing above keeps a ciphertext: the announcement check
		// copies the one it keeps, decryption writes new plaintexts.
		frameBufs.Put(fr.buf)
	}
	return ids
}

// open decrypts an envelope: a sender-key message (after an 'S') in the
// group scenario, else an SDK message of a pairwise session.
func (d *device) open(ctx context.Context, e *mailbox.Envelope) ([]byte, error) {
	if len(e.Ciphertext) > 0 && e.Ciphertext[0] == 'S' && d.skeys != nil {
		return d.openGroup(e.Conversation, e.Sender, e.Ciphertext[1:])
	}
	var m client.Message
	if err := m.UnmarshalBinary(e.Ciphertext); err != nil {
		return nil, err
	}
	return d.sdk.Decrypt(ctx, e.Sender, &m)
}

// errRateLimited carries the server's Retry-After of a refused send: 429
// rate-limited, or 503 overloaded (admission control).
type errRateLimited struct {
	after      time.Duration
	overloaded bool
}

func (e *errRateLimited) Error() string {
	if e.overloaded {
		return "503 overloaded"
	}
	return "429 rate limited"
}

// outgoing is one encrypted send, ready to post (and to post again with the
// same client id after a 429).
type outgoing struct {
	req  messaging.SendRequest // the ciphertexts in Data
	mu   sync.Mutex
	body []byte // the request as JSON, made on first use
}

// json is the request as POST /v1/messages and JSON frames carry it, the
// ciphertexts in base64.
func (o *outgoing) json() ([]byte, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.body == nil {
		req := o.req
		req.Envelopes = slices.Clone(req.Envelopes)
		for i := range req.Envelopes {
			req.Envelopes[i].Ciphertext = base64.StdEncoding.EncodeToString(req.Envelopes[i].Data)
		}
		b, err := json.Marshal(&req)
		if err != nil {
			return nil, err
		}
		o.body = b
	}
	return o.body, nil
}

// seal encrypts pt once for each recipient device and builds the send.
func (d *device) seal(to messaging.SendTo, recipients []string, pt []byte) (*outgoing, error) {
	req := messaging.SendRequest{To: to, Class: "message",
		ClientID: client.SendClientID(client.NewMessageID())}
	for _, rcpt := range recipients {
		m, err := d.sdk.Encrypt(rcpt, pt)
		if err != nil {
			return nil, err
		}
		wire, err := m.MarshalBinary()
		if err != nil {
			return nil, err
		}
		req.Envelopes = append(req.Envelopes, messaging.SendEnvelope{DeviceID: rcpt, Data: wire})
	}
	return &outgoing{req: req}, nil
}

// writeFrame writes a frame on the stream: a JSON one (built by text) or
// a binary one (by bin), as the stream speaks.
func (d *device) writeFrame(ctx context.Context, text func() ([]byte, error), bin func() ([]byte, error)) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	typ, build := websocket.MessageText, text
	if d.bin {
		typ, build = websocket.MessageBinary, bin
	}
	b, err := build()
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return d.ws.Write(wctx, typ, b)
}

// writeAck acknowledges ids, in frames of at most wire.MaxAckBatch.
func (d *device) writeAck(ctx context.Context, ids []string) error {
	for len(ids) > 0 {
		part := ids[:min(len(ids), wire.MaxAckBatch)]
		ids = ids[len(part):]
		err := d.writeFrame(ctx,
			func() ([]byte, error) { return json.Marshal(map[string]any{"type": "ack", "ids": part}) },
			func() ([]byte, error) { return wire.AppendAck(nil, part) })
		if err != nil {
			return err
		}
	}
	return nil
}

func (d *device) answer(ref string, err error) {
	d.pmu.Lock()
	ch := d.pending[ref]
	delete(d.pending, ref)
	d.pmu.Unlock()
	if ch != nil {
		ch <- err
	}
}

// postFrame sends o as a send frame on the stream and waits for its
// "sent" or "send_failed" answer.
func (d *device) postFrame(ctx context.Context, o *outgoing) error {
	ref := "r" + strconv.FormatUint(d.sendSeq.Add(1), 10)
	ch := make(chan error, 1)
	d.pmu.Lock()
	d.pending[ref] = ch
	d.pmu.Unlock()
	text := func() ([]byte, error) {
		body, err := o.json()
		if err != nil {
			return nil, err
		}
		return json.Marshal(struct {
			Type    string          `json:"type"`
			Ref     string          `json:"ref"`
			Request json.RawMessage `json:"request"`
		}{"send", ref, body})
	}
	bin := func() ([]byte, error) { return messaging.AppendSendFrame(nil, ref, &o.req) }
	if err := d.writeFrame(ctx, text, bin); err != nil {
		d.answer(ref, nil)
		return err
	}
	t := time.NewTimer(60 * time.Second)
	defer t.Stop()
	select {
	case err := <-ch:
		return err
	case <-t.C:
		d.answer(ref, nil)
		return errors.New("send: no answer on the stream in 60s")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// post sends it: POST /v1/messages with the device's session, or a send
// frame on the stream.
func (d *device) post(ctx context.Context, o *outgoing) error {
	if d.wsSend {
		return d.postFrame(ctx, o)
	}
	bin := d.binHTTP.Load()
	ct, body, err := "application/json", []byte(nil), error(nil)
	if bin {
		ct = messaging.BinarySendType
		body, err = messaging.AppendSendFrame(nil, "", &o.req)
	} else {
		body, err = o.json()
	}
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+"/v1/messages", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Authorization", "Bearer "+d.token)
	// As the SDK does: the transport may send it again on a kept-alive
	// connection that closed before the answer.
	req.Header.Set(messaging.IdempotencyKeyHeader, o.req.ClientID)
	resp, err := d.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if bin && resp.StatusCode == http.StatusUnsupportedMediaType {
		// A kanald before binary send bodies: JSON from now on.
		d.binHTTP.Store(false)
		return d.post(ctx, o)
	}
	switch resp.StatusCode {
	case http.StatusCreated, http.StatusOK:
		return nil
	case http.StatusTooManyRequests:
		s, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return &errRateLimited{after: time.Duration(max(s, 1)) * time.Second}
	}
	var p struct{ Type string }
	json.Unmarshal(b, &p)
	if resp.StatusCode == http.StatusServiceUnavailable && p.Type == string(messaging.TypeOverloaded) {
		s, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return &errRateLimited{after: time.Duration(max(s, 1)) * time.Second, overloaded: true}
	}
	return &errSendStatus{status: resp.StatusCode, typ: strings.TrimPrefix(p.Type, "urn:kanal:problem:")}
}

// errSendStatus is a send's error answer other than 429 and 503 overloaded.
type errSendStatus struct {
	status int
	typ    string
}

func (e *errSendStatus) Error() string { return fmt.Sprintf("send: %d %s", e.status, e.typ) }

// sendOnce seals and posts pt, retrying after 429s until ctx ends.
func (r *runner) sendOnce(ctx context.Context, d *device, to messaging.SendTo, recipients []string, pt []byte) error {
	o, err := d.seal(to, recipients, pt)
	if err != nil {
		return err
	}
	return r.postRetry(ctx, d, o)
}

// postRetry posts o, again after each 429 or 503 overloaded once the
// server's Retry-After and up to half of it more at random have passed (as
// messaging/client does), until ctx ends.
func (r *runner) postRetry(ctx context.Context, d *device, o *outgoing) error {
	for {
		err := d.post(ctx, o)
		var rl *errRateLimited
		if !errors.As(err, &rl) {
			return err
		}
		r.errs.add(rl.Error() + " (retried)")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(rl.after + mrand.N(rl.after/2+1)):
		}
	}
}

// streamFrame is a frame from the stream, JSON or binary.
type streamFrame struct {
	Type      string             `json:"type"`
	Envelopes []mailbox.Envelope `json:"envelopes"`
	Ref       string             `json:"ref"`
	Problem   *struct {
		Type       string `json:"type"`
		Status     int    `json:"status"`
		RetryAfter int    `json:"retry_after"`
	} `json:"problem"`
}

// decodeBinary reads a binary frame (kanal.bin.v1) into f.
func (f *streamFrame) decodeBinary(b []byte) error {
	if len(b) == 0 {
		return errors.New("empty frame")
	}
	var err error
	switch b[0] {
	case wire.FrameEnvelopes:
		f.Type = "envelopes"
		f.Envelopes, err = wire.DecodeEnvelopes(b)
	case wire.FrameSynced:
		f.Type = "synced"
	case wire.FrameSent:
		f.Type = "sent"
		f.Ref, _, err = messaging.DecodeSentFrame(b)
	case wire.FrameSendFailed, wire.FrameProblem:
		var raw json.RawMessage
		var t byte
		t, f.Ref, raw, err = wire.DecodeProblemFrame(b)
		f.Type = map[byte]string{wire.FrameSendFailed: "send_failed", wire.FrameProblem: "problem"}[t]
		if err == nil {
			err = json.Unmarshal(raw, &f.Problem)
		}
	default:
		f.Type = fmt.Sprintf("0x%02x", b[0])
	}
	return err
}
