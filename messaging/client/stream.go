package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/binframe"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/kind"
	mailbox "github.com/kanal-server/kanal/messaging/mailbox/wire"
)

// Receiving. Connect opens the device's stream; Receive hands out one
// message at a time: decrypted, its sender checked, its conversation
// recomputed, its kind validated. Delivery is at least once to the
// application: a message is acknowledged to the server (which then
// deletes it) only when the application asks for the next one or calls
// Ack. Until then the decrypted message waits in the Store, because its
// ratchet keys are gone once it has been decrypted; a repeat of the same
// envelope — after a reconnect, or on a second node — is answered from
// there, never decrypted twice, and never handed out twice once acked.
//
// The acknowledgements Receive makes are gathered: they go out in one
// ack frame AckDelay after the first of them, or at once when AckAtOnce
// wait, and Close writes those still waiting. A frame per message would
// cost the device and the server a write and a read each for every
// message that arrives while others are being read. Ack writes at once.

// AckDelay is the longest an acknowledgement that Receive made waits for
// others to go out with: the server gathers acknowledgements for as long
// before it deletes the envelopes (mailbox.AckInterval).
const AckDelay = 100 * time.Millisecond

// AckAtOnce is how many gathered acknowledgements are written without
// waiting for AckDelay: half of what the server lets a stream hold
// unacknowledged before it waits, so it never waits for a gathered one.
const AckAtOnce = 256

// ackWriteTimeout bounds the write of gathered acknowledgements that no
// caller waits for.
const ackWriteTimeout = 10 * time.Second

// Incoming is a received message.
type Incoming struct {
	EnvelopeID   string    `json:"envelope_id"`
	Conversation string    `json:"conversation"`
	ServerTime   time.Time `json:"server_ts"`
	SenderDevice string    `json:"sender_device"`
	// SenderAccount is the sender device's account, as its certificate
	// (checked against the CA) names it; empty for a server notice.
	SenderAccount string `json:"sender_account,omitempty"`
	// Org is set when the sender proved it speaks for an organisation:
	// its device's membership certificate chains to the CA through the
	// organisation's certificate.
	Org *ca.Membership `json:"org,omitempty"`
	// FromServer marks a notice written by the server itself (a group's
	// membership changed, a payment arrived): the server's word, not a
	// member's, signed by the deployment's notary (VerifyNotice). For a
	// notice, ServerTime is the time the notary signed.
	FromServer bool `json:"from_server,omitempty"`
	// Announcement marks an organisation's broadcast announcement: signed
	// by an agent device (Org is its verified membership), not end-to-end
	// encrypted — the server could read it. Message is its text.
	Announcement bool `json:"announcement,omitempty"`
	// Reply is where an answer to this message goes.
	Reply   Peer          `json:"reply"`
	Message *kind.Message `json:"-"`
	Raw     []byte        `json:"message"` // Message in its JSON form
}

// ReceiveError is an envelope that could not be read: it was malformed,
// did not decrypt, or its sender or conversation did not check out. It is
// acknowledged like any other envelope, so it cannot block the mailbox.
type ReceiveError struct {
	EnvelopeID   string
	SenderDevice string
	Err          error
}

func (e *ReceiveError) Error() string {
	return fmt.Sprintf("messaging/client: envelope %s from %s: %v", e.EnvelopeID, e.SenderDevice, e.Err)
}
func (e *ReceiveError) Unwrap() error { return e.Err }

// ErrClosed is returned by a Stream that has closed; errors.As it to a
// *websocket.CloseError for the server's close code.
var ErrClosed = errors.New("messaging/client: stream closed")

// Stream is this device's open /v1/stream.
type Stream struct {
	c  *Client
	ws *websocket.Conn
	// bin: the server selected binary frames (binframe.Subprotocol).
	bin bool

	arrived chan struct{} // signalled when the queue grows
	synced  chan struct{}
	done    chan struct{}
	err     atomic.Pointer[error]

	mu      sync.Mutex
	queue   []mailbox.Envelope // received, not yet handed out (at most the server's MaxInFlight)
	unacked []string           // handed out, acknowledged with the next Receive
	due     []string           // acknowledged by Receive, written by the timer
	dueAt   *time.Timer        // armed while due waits
	dueErr  error              // the timer's failed write, for the next call
	pending map[string]chan sendResult
	ref     int
}

type sendResult struct {
	resp *messaging.SendResponse
	prob *sendProblem
}

// Connect opens the stream. The server sends the mailbox's backlog, then
// "synced", then new envelopes as they arrive.
func (c *Client) Connect(ctx context.Context) (*Stream, error) {
	u := c.base + "/v1/stream"
	switch {
	case strings.HasPrefix(u, "https://"):
		u = "wss://" + strings.TrimPrefix(u, "https://")
	case strings.HasPrefix(u, "http://"):
		u = "ws://" + strings.TrimPrefix(u, "http://")
	default:
		return nil, fmt.Errorf("messaging/client: server address %q: want http(s)://", c.base)
	}
	ws, resp, err := websocket.Dial(ctx, u, c.dialOptions())
	if err != nil {
		if resp != nil && resp.StatusCode >= 400 {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes))
			return nil, problemOf(resp, b)
		}
		return nil, fmt.Errorf("messaging/client: stream: %w", err)
	}
	ws.SetReadLimit(int64(mailbox.MaxFrameBytes)*2 + 64<<10)
	s := &Stream{c: c, ws: ws, bin: strings.EqualFold(ws.Subprotocol(), binframe.Subprotocol),
		arrived: make(chan struct{}, 1), synced: make(chan struct{}),
		done: make(chan struct{}), pending: map[string]chan sendResult{}}
	go s.readLoop()
	return s, nil
}

// subprotocols are the stream's subprotocols the client offers, in order
// of preference: binary frames, then JSON.
func (c *Client) subprotocols() []string {
	if c.jsonFrames {
		return []string{"kanal"}
	}
	return []string{binframe.Subprotocol, "kanal"}
}

// Binary says whether the stream speaks binary frames (kanal.bin.v1).
func (s *Stream) Binary() bool { return s.bin }

// Close writes the acknowledgements Receive gathered and closes the
// stream. Messages handed out and not yet acknowledged come again on the
// next stream.
func (s *Stream) Close() error {
	if ids := s.takeDue(); len(ids) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), ackWriteTimeout)
		_ = s.ack(ctx, ids) // if the socket is gone, they come again
		cancel()
	}
	err := s.ws.Close(websocket.StatusNormalClosure, "")
	<-s.done
	return err
}

func (s *Stream) fail(err error) {
	if err == nil {
		err = ErrClosed
	}
	s.err.CompareAndSwap(nil, &err)
}

// Err returns why the stream ended, nil while it is open.
func (s *Stream) Err() error {
	if p := s.err.Load(); p != nil {
		return fmt.Errorf("%w: %w", ErrClosed, *p)
	}
	return nil
}

func (s *Stream) readLoop() {
	defer close(s.done)
	var synced bool
	for {
		typ, data, err := s.ws.Read(context.Background())
		if err != nil {
			s.fail(err)
			return
		}
		if s.bin {
			if err := s.takeBinary(typ, data, &synced); err != nil {
				s.fail(err)
				s.ws.Close(websocket.StatusPolicyViolation, "malformed frame")
				return
			}
			continue
		}
		var head struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(data, &head); err != nil {
			s.fail(fmt.Errorf("frame is not JSON: %w", err))
			s.ws.Close(websocket.StatusInvalidFramePayloadData, "frame is not JSON")
			return
		}
		switch head.Type {
		case "envelopes":
			var f struct {
				Type      string             `json:"type"`
				Envelopes []mailbox.Envelope `json:"envelopes"`
			}
			if err := json.Unmarshal(data, &f); err != nil {
				s.fail(err)
				return
			}
			s.enqueue(f.Envelopes)
		case "synced":
			s.markSynced(&synced)
		case "sent", "send_failed":
			var f struct {
				Type     string                  `json:"type"`
				Ref      string                  `json:"ref"`
				Response *messaging.SendResponse `json:"response"`
				Problem  *sendProblem            `json:"problem"`
			}
			if err := json.Unmarshal(data, &f); err != nil {
				s.fail(err)
				return
			}
			s.answer(f.Ref, sendResult{resp: f.Response, prob: f.Problem})
		case "problem":
			// A refused ack or similar: the server says why and the
			// stream goes on. Nothing to hand to the application.
		}
	}
}

// takeBinary takes one frame of a binary stream.
func (s *Stream) takeBinary(typ websocket.MessageType, data []byte, synced *bool) error {
	if typ != websocket.MessageBinary || len(data) == 0 {
		return errors.New("a text or empty frame on a binary stream")
	}
	switch data[0] {
	case mailbox.FrameEnvelopes:
		envs, err := mailbox.DecodeEnvelopes(data)
		if err != nil {
			return err
		}
		s.enqueue(envs)
	case mailbox.FrameSynced:
		if len(data) != 1 {
			return fmt.Errorf("%w: synced frame with %d bytes after its type", binframe.ErrMalformed, len(data)-1)
		}
		s.markSynced(synced)
	case mailbox.FrameSent:
		ref, resp, err := messaging.DecodeSentFrame(data)
		if err != nil {
			return err
		}
		s.answer(ref, sendResult{resp: resp})
	case mailbox.FrameSendFailed, mailbox.FrameProblem:
		t, ref, raw, err := mailbox.DecodeProblemFrame(data)
		if err != nil {
			return err
		}
		if t == mailbox.FrameSendFailed {
			var p sendProblem
			if err := json.Unmarshal(raw, &p); err != nil {
				return fmt.Errorf("%w: send_failed: %v", binframe.ErrMalformed, err)
			}
			s.answer(ref, sendResult{prob: &p})
		}
		// A problem frame: a refused ack or similar; the stream goes on.
	default:
		return fmt.Errorf("%w: unknown frame type 0x%02x", binframe.ErrMalformed, data[0])
	}
	return nil
}

// enqueue adds received envelopes for Receive.
func (s *Stream) enqueue(envs []mailbox.Envelope) {
	s.mu.Lock()
	s.queue = append(s.queue, envs...)
	s.mu.Unlock()
	select {
	case s.arrived <- struct{}{}:
	default:
	}
}

func (s *Stream) markSynced(synced *bool) {
	if !*synced {
		*synced = true
		close(s.synced)
	}
}

// answer hands a send's answer to the Send waiting for it.
func (s *Stream) answer(ref string, r sendResult) {
	s.mu.Lock()
	ch := s.pending[ref]
	delete(s.pending, ref)
	s.mu.Unlock()
	if ch != nil {
		ch <- r
	}
}

// Synced is closed once the server has sent the mailbox's backlog.
func (s *Stream) Synced() <-chan struct{} { return s.synced }

// Receive returns the next message, waiting for one. It first
// acknowledges the messages handed out before, gathered with others for
// at most AckDelay. A *ReceiveError reports
// an envelope that could not be read; Receive can be called again after
// it.
func (s *Stream) Receive(ctx context.Context) (*Incoming, error) {
	if err := s.gather(ctx); err != nil {
		return nil, err
	}
	for {
		s.mu.Lock()
		if len(s.queue) > 0 {
			env := s.queue[0]
			s.queue = s.queue[1:]
			s.unacked = append(s.unacked, env.ID)
			s.mu.Unlock()
			in, err := s.c.open(ctx, &env)
			if errors.Is(err, errSeen) {
				continue // acknowledged with the next call
			}
			return in, err
		}
		s.mu.Unlock()
		select {
		case <-s.arrived:
		case <-s.done:
			s.mu.Lock()
			more := len(s.queue) > 0 // arrived before the close: hand out first
			s.mu.Unlock()
			if !more {
				return nil, s.Err()
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// ReceiveBatch returns the messages that have arrived, up to max (at
// least one: it waits for the first), and acknowledges none of them: the
// caller keeps them and then calls Ack, so a crash between the two loses
// nothing — the envelopes come again on the next stream, and the SDK hands
// them out again from its decrypted copies. bad holds a *ReceiveError for
// each envelope that could not be read; those are acknowledged with the
// messages. Unlike Receive, it does not acknowledge what was handed out
// before.
func (s *Stream) ReceiveBatch(ctx context.Context, max int) (msgs []*Incoming, bad []error, err error) {
	if max <= 0 {
		return nil, nil, fmt.Errorf("messaging/client: receive batch of %d", max)
	}
	for {
		s.mu.Lock()
		n := min(len(s.queue), max)
		envs := slices.Clone(s.queue[:n])
		s.queue = s.queue[n:]
		s.mu.Unlock()
		if n > 0 {
			var seen []string // acknowledged and forgotten before: ack again now
			msgs, bad, seen, err = s.c.openBatch(ctx, envs)
			if err != nil {
				return nil, nil, err
			}
			s.mu.Lock()
			for _, in := range msgs {
				s.unacked = append(s.unacked, in.EnvelopeID)
			}
			for _, e := range bad {
				var re *ReceiveError
				if errors.As(e, &re) {
					s.unacked = append(s.unacked, re.EnvelopeID)
				}
			}
			s.mu.Unlock()
			if err := s.ack(ctx, seen); err != nil {
				return nil, nil, err
			}
			if len(msgs) > 0 || len(bad) > 0 {
				return msgs, bad, nil
			}
			continue
		}
		select {
		case <-s.arrived:
		case <-s.done:
			s.mu.Lock()
			more := len(s.queue) > 0 // arrived before the close: hand out first
			s.mu.Unlock()
			if !more {
				return nil, nil, s.Err()
			}
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

// testHookBacklogWaits, when set by a test, runs where Backlog has found
// the queue empty and is about to wait for a frame.
var testHookBacklogWaits func(*Stream)

// Backlog returns every message that was waiting when the stream
// connected, up to the server's "synced".
func (s *Stream) Backlog(ctx context.Context) ([]*Incoming, []error, error) {
	var out []*Incoming
	var bad []error
	for {
		// The read loop queues a frame's envelopes before it takes the
		// "synced" after them, so "synced" seen first and then an empty
		// queue mean the backlog is out. Looked at the other way round, a
		// frame queued and "synced" taken between the two looks would end
		// the backlog with envelopes still queued.
		var synced bool
		select {
		case <-s.synced:
			synced = true
		default:
		}
		s.mu.Lock()
		empty := len(s.queue) == 0
		s.mu.Unlock()
		if empty && synced {
			return out, bad, s.Ack(ctx)
		}
		if empty {
			if testHookBacklogWaits != nil {
				testHookBacklogWaits(s)
			}
			select {
			case <-s.synced:
				continue
			case <-s.arrived:
				continue
			case <-s.done:
				return out, bad, s.Err()
			case <-ctx.Done():
				return out, bad, ctx.Err()
			}
		}
		in, err := s.Receive(ctx)
		var re *ReceiveError
		switch {
		case errors.As(err, &re):
			bad = append(bad, err)
		case err != nil:
			return out, bad, err
		default:
			out = append(out, in)
		}
	}
}

// Ack acknowledges the messages handed out so far, those whose gathered
// acknowledgement waits included, at once: the server deletes them, and
// the SDK forgets their decrypted copies.
func (s *Stream) Ack(ctx context.Context) error {
	s.mu.Lock()
	ids := append(s.takeDueLocked(), s.unacked...)
	s.unacked = nil
	err := s.dueErr
	s.dueErr = nil
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.ack(ctx, ids)
}

// gather passes the messages handed out so far to the acknowledgements
// waiting for the timer, and writes them all at once when AckAtOnce wait.
// It returns the error of a gathered write that failed since the last
// call.
func (s *Stream) gather(ctx context.Context) error {
	s.mu.Lock()
	if err := s.dueErr; err != nil {
		s.dueErr = nil
		s.mu.Unlock()
		return err
	}
	s.due = append(s.due, s.unacked...)
	s.unacked = nil
	var now []string
	switch {
	case len(s.due) >= AckAtOnce:
		now = s.takeDueLocked()
	case len(s.due) > 0 && s.dueAt == nil:
		s.dueAt = time.AfterFunc(AckDelay, s.writeDue)
	}
	s.mu.Unlock()
	return s.ack(ctx, now)
}

// takeDue takes the gathered acknowledgements and stops their timer.
func (s *Stream) takeDue() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.takeDueLocked()
}

// takeDueLocked is takeDue with s.mu held.
func (s *Stream) takeDueLocked() []string {
	if s.dueAt != nil {
		s.dueAt.Stop()
		s.dueAt = nil
	}
	ids := s.due
	s.due = nil
	return ids
}

// writeDue writes the gathered acknowledgements when AckDelay is up. A
// failure is kept for the next Receive or Ack, as if that call had
// written them.
func (s *Stream) writeDue() {
	s.mu.Lock()
	ids := s.due
	s.due, s.dueAt = nil, nil
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), ackWriteTimeout)
	defer cancel()
	if err := s.ack(ctx, ids); err != nil {
		s.mu.Lock()
		if s.dueErr == nil {
			s.dueErr = err
		}
		s.mu.Unlock()
	}
}

// ack acknowledges ids and forgets their decrypted copies.
func (s *Stream) ack(ctx context.Context, ids []string) error {
	for len(ids) > 0 {
		n := min(len(ids), mailbox.MaxAckBatch)
		var b []byte
		typ := websocket.MessageText
		if s.bin {
			var err error
			if b, err = mailbox.AppendAck(nil, ids[:n]); err != nil {
				return err
			}
			typ = websocket.MessageBinary
		} else {
			b, _ = json.Marshal(struct {
				Type string   `json:"type"`
				IDs  []string `json:"ids"`
			}{"ack", ids[:n]})
		}
		if err := s.ws.Write(ctx, typ, b); err != nil {
			return fmt.Errorf("%w: ack: %w", ErrClosed, err)
		}
		if err := s.c.forget(ids[:n]); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// Send sends m to the conversation with to over the stream, with the same
// device refresh and retries as Client.Send.
func (s *Stream) Send(ctx context.Context, to Peer, m *kind.Message) (*messaging.SendResponse, error) {
	return s.c.send(ctx, to, m, s.post)
}

func (s *Stream) post(ctx context.Context, req *messaging.SendRequest) (*messaging.SendResponse, *sendProblem, error) {
	s.mu.Lock()
	s.ref++
	ref := "s" + strconv.Itoa(s.ref)
	ch := make(chan sendResult, 1)
	s.pending[ref] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pending, ref)
		s.mu.Unlock()
	}()
	var b []byte
	var err error
	typ := websocket.MessageText
	if s.bin {
		b, err = messaging.AppendSendFrame(nil, ref, req)
		typ = websocket.MessageBinary
	} else {
		b, err = json.Marshal(messaging.SendFrame{Type: "send", Ref: ref, Request: *req})
	}
	if err != nil {
		return nil, nil, err
	}
	if err := s.ws.Write(ctx, typ, b); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrClosed, err)
	}
	select {
	case r := <-ch:
		return r.resp, r.prob, nil
	case <-s.done:
		return nil, nil, s.Err()
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// Receipt tells the sender's devices that in was delivered or read.
// Receipts travel like any message, end to end, in the same conversation.
func (s *Stream) Receipt(ctx context.Context, in *Incoming, status string) error {
	if in.FromServer || in.Announcement || in.Message.Kind == kind.Receipt {
		return nil // the server gets no receipts, and receipts get none
	}
	m, err := kind.New(NewMessageID(), s.c.now(), &kind.ReceiptBody{Status: status, IDs: []string{in.Message.ID}})
	if err != nil {
		return err
	}
	_, err = s.Send(ctx, in.Reply, m)
	return err
}

// errSeen marks an envelope already handed out and acknowledged.
var errSeen = errors.New("messaging/client: envelope already received")

// Names in the Store: the ids of envelopes already handed out (a bounded
// list), and the decrypted copy of each until it is acknowledged.
const nameSeen = "inbox/seen"

func nameReceived(envelopeID string) string { return "inbox/msg/" + envelopeID }

// maxSeen bounds the remembered envelope ids. The server deletes an
// envelope once acknowledged, so a repeat can only come from the window
// between handing out and acknowledging, far shorter than this list.
const maxSeen = 4096

// open turns an envelope into an Incoming: from the Store if this device
// has already decrypted it, else by decrypting and checking it.
func (c *Client) open(ctx context.Context, env *mailbox.Envelope) (*Incoming, error) {
	c.inboxMu.Lock()
	defer c.inboxMu.Unlock()
	if b, err := c.store.Get(nameReceived(env.ID)); err == nil {
		var in Incoming
		if err := json.Unmarshal(b, &in); err != nil {
			return nil, err
		}
		if in.Message, err = kind.Unmarshal(in.Raw); err != nil {
			return nil, err
		}
		return &in, nil
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	seen, err := c.seenList()
	if err != nil {
		return nil, err
	}
	for _, id := range seen {
		if id == env.ID {
			return nil, errSeen
		}
	}
	in, rerr := c.read(ctx, env)
	if rerr != nil {
		rerr = &ReceiveError{EnvelopeID: env.ID, SenderDevice: env.Sender, Err: rerr}
	} else if err := c.putJSON(nameReceived(env.ID), in); err != nil {
		return nil, err
	}
	seen = append(seen, env.ID)
	if len(seen) > maxSeen {
		seen = seen[len(seen)-maxSeen:]
	}
	if err := c.putJSON(nameSeen, seen); err != nil {
		return nil, err
	}
	return in, rerr
}

// openBatch is open for several envelopes under one lock, writing the
// list of seen envelope ids once for the batch instead of once for each.
// That is safe to defer: until the list is written, each envelope read
// here has its decrypted copy in the Store, which open consults first.
// seen returns the envelopes that were handed out and acknowledged before.
func (c *Client) openBatch(ctx context.Context, envs []mailbox.Envelope) (msgs []*Incoming, bad []error, seen []string, err error) {
	c.inboxMu.Lock()
	defer c.inboxMu.Unlock()
	list, err := c.seenList()
	if err != nil {
		return nil, nil, nil, err
	}
	known := make(map[string]bool, len(list))
	for _, id := range list {
		known[id] = true
	}
	added := false
	batch := make(map[string]bool, len(envs))
	for i := range envs {
		env := &envs[i]
		if batch[env.ID] {
			seen = append(seen, env.ID)
			continue
		}
		batch[env.ID] = true
		if b, err := c.store.Get(nameReceived(env.ID)); err == nil {
			var in Incoming
			if err := json.Unmarshal(b, &in); err != nil {
				return nil, nil, nil, err
			}
			if in.Message, err = kind.Unmarshal(in.Raw); err != nil {
				return nil, nil, nil, err
			}
			msgs = append(msgs, &in)
			continue
		} else if !errors.Is(err, ErrNotFound) {
			return nil, nil, nil, err
		}
		if known[env.ID] {
			seen = append(seen, env.ID)
			continue
		}
		in, rerr := c.read(ctx, env)
		if rerr != nil {
			bad = append(bad, &ReceiveError{EnvelopeID: env.ID, SenderDevice: env.Sender, Err: rerr})
		} else if err := c.putJSON(nameReceived(env.ID), in); err != nil {
			return nil, nil, nil, err
		} else {
			msgs = append(msgs, in)
		}
		known[env.ID] = true
		list = append(list, env.ID)
		added = true
	}
	if added {
		if len(list) > maxSeen {
			list = list[len(list)-maxSeen:]
		}
		if err := c.putJSON(nameSeen, list); err != nil {
			return nil, nil, nil, err
		}
	}
	return msgs, bad, seen, nil
}

func (c *Client) seenList() ([]string, error) {
	b, err := c.store.Get(nameSeen)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var ids []string
	return ids, json.Unmarshal(b, &ids)
}

// forget drops the decrypted copies of acknowledged envelopes.
func (c *Client) forget(ids []string) error {
	c.inboxMu.Lock()
	defer c.inboxMu.Unlock()
	for _, id := range ids {
		if err := c.store.Delete(nameReceived(id)); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return nil
}

// read decrypts and checks one envelope.
func (c *Client) read(ctx context.Context, env *mailbox.Envelope) (*Incoming, error) {
	in := &Incoming{EnvelopeID: env.ID, Conversation: env.Conversation, ServerTime: env.ServerTime, SenderDevice: env.Sender}
	if env.Sender == messaging.NoticeSender {
		n, err := c.VerifyNotice(env)
		if err != nil {
			return nil, err
		}
		if err := c.acceptNotice(n); err != nil {
			return nil, err
		}
		in.FromServer, in.Message, in.Raw, in.ServerTime = true, n.Message, n.Raw, n.Time
		if messaging.ValidGroupID(env.Conversation) {
			in.Reply = Peer{GroupID: env.Conversation}
		}
		return in, nil
	}
	if env.Class == mailbox.ClassBroadcast {
		return c.readAnnouncement(env, in)
	}
	var m Message
	if err := m.UnmarshalBinary(env.Ciphertext); err != nil {
		return nil, err
	}
	pt, err := c.Decrypt(ctx, env.Sender, &m)
	if err != nil {
		return nil, err
	}
	acct, err := c.peerAccount(env.Sender)
	if err != nil {
		return nil, err
	}
	in.SenderAccount = acct
	if err := c.pin(map[string]string{env.Sender: acct}); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(pt))
	dec.DisallowUnknownFields()
	var ct content
	if err := dec.Decode(&ct); err != nil || ct.V != contentVersion {
		return nil, fmt.Errorf("%w: content: %v", ErrBadMessage, err)
	}
	// The conversation follows from who sent it and how they addressed
	// it; the server's label must agree, so it cannot move a message.
	conv, err := conversationOf(acct, ct.To)
	if err != nil || conv != ct.Conversation || conv != env.Conversation {
		return nil, fmt.Errorf("%w: conversation %s does not follow from the sender %s and its addressing", ErrUntrusted, env.Conversation, acct)
	}
	to := ct.To
	switch {
	case to.GroupID != "":
		in.Reply = Peer{GroupID: to.GroupID}
	case to.OrgID != "" && to.AccountID != "":
		// An agent answering as the organisation must prove it.
		mem, err := c.checkAgent(ctx, ct.Org, acct, env.Sender, to.OrgID)
		if err != nil {
			return nil, err
		}
		in.Org = mem
		if c.account == to.AccountID {
			in.Reply = Peer{OrgID: to.OrgID}
		} else {
			in.Reply = Peer{OrgID: to.OrgID, AccountID: to.AccountID}
		}
	case to.OrgID != "":
		// An agent writing to its colleagues (an internal case note)
		// proves that it is one of them.
		if ct.Org != nil {
			mem, err := c.checkAgent(ctx, ct.Org, acct, env.Sender, to.OrgID)
			if err != nil {
				return nil, err
			}
			in.Org = mem
		}
		if acct == c.account {
			in.Reply = Peer{OrgID: to.OrgID}
		} else {
			in.Reply = Peer{OrgID: to.OrgID, AccountID: acct}
		}
	default:
		if c.account != to.AccountID && c.account != acct {
			return nil, fmt.Errorf("%w: a direct message between others", ErrUntrusted)
		}
		if acct == c.account {
			in.Reply = Peer{AccountID: to.AccountID}
		} else {
			in.Reply = Peer{AccountID: acct}
		}
	}
	if ct.Org != nil && in.Org == nil {
		return nil, fmt.Errorf("%w: organisation proof on a message not sent as the organisation", ErrBadMessage)
	}
	msg, err := kind.Unmarshal(ct.Message)
	if err != nil {
		return nil, err
	}
	// A case note is the organisation's internal word: only from an agent
	// of the organisation, to its agents alone.
	if msg.Kind == kind.CaseNote && (in.Org == nil || to.AccountID != "") {
		return nil, untrusted(env.Sender, "a case note not written by an agent to the organisation's agents")
	}
	if p, ok := msg.Body.(*kind.ProfileBody); ok {
		if err := c.acceptProfile(acct, p); err != nil {
			return nil, err
		}
	}
	if v, ok := msg.Body.(*kind.VerifiedNameBody); ok {
		fromCitizen := to.OrgID != "" && to.AccountID == "" && to.GroupID == "" && ct.Org == nil
		if err := c.acceptVerifiedName(acct, to.OrgID, fromCitizen, v); err != nil {
			return nil, err
		}
	}
	in.Message, in.Raw = msg, ct.Message
	return in, nil
}

// checkAgent checks that proof makes device (of account) an agent of org,
// with its membership in the transparency log.
func (c *Client) checkAgent(ctx context.Context, proof *orgProof, account, device, org string) (*ca.Membership, error) {
	mem, err := c.checkOrgProof(proof, account, device)
	if err != nil {
		return nil, err
	}
	if err := c.logged(ctx, proof.Log, membershipEntry(*mem), proof.Membership); err != nil {
		return nil, notLogged(device, "membership", err)
	}
	if mem.OrgID != org {
		return nil, untrusted(device, "membership of %s, not %s", mem.OrgID, org)
	}
	if !identity.IsAgentRole(mem.Role) {
		return nil, untrusted(device, "role %q does not speak for the organisation", mem.Role)
	}
	return mem, nil
}
