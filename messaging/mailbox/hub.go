package mailbox

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/kanal-server/kanal/internal/binframe"
	"github.com/kanal-server/kanal/internal/bus"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/messaging/mailbox/wire"
)

// FrameHandler handles a frame type the hub does not know itself, such as a
// send. Its reply, if not nil, is written back to the device; an error that
// is a *web.Problem is sent as a problem frame, any other closes the socket.
type FrameHandler func(ctx context.Context, device string, typ string, raw json.RawMessage) (reply any, err error)

// BinaryFrameHandler is FrameHandler for a stream that speaks binary
// frames (binframe.Subprotocol): frame is the whole frame, its type in
// the first byte; a reply must implement encoding.BinaryAppender.
type BinaryFrameHandler func(ctx context.Context, device string, frame []byte) (reply any, err error)

// HubOptions configures a Hub.
type HubOptions struct {
	Store   *Store
	Bus     *bus.Bus
	Logger  *slog.Logger
	Tracker *web.Tracker // shutdown closes every socket through it
	// Session returns the session of an authenticated request; the
	// identity middleware in front of the stream route has checked it.
	// The stream is bound to it: it closes when the session expires or
	// ends (EndSessions). Required.
	Session func(*http.Request) (Session, bool)
	// Check says whether a stream's session is still live: nil, an error
	// wrapping ErrSessionEnded or ErrDeviceRevoked, or any other error
	// when it cannot tell (the stream stays, and is checked again). It is
	// asked once the socket is registered — a session that ended between
	// the request's authentication and the registration would otherwise
	// be missed, EndSessions finding nothing to close yet — and every
	// SessionRecheck after, so that a session end lost on the bus does
	// not keep a stream open. Required.
	Check func(ctx context.Context, s Session) error
	// CheckSessions, if set, is Check for many sessions at once: one
	// result per session, in order, or an error when it cannot tell for
	// any. The streams' periodic rechecks are then gathered and asked
	// together (recheck.go), at most 1,000 per call; the check at
	// registration still uses Check.
	CheckSessions func(ctx context.Context, ss []Session) ([]error, error)
	// SessionRecheck overrides SessionRecheckInterval (zero: default).
	SessionRecheck time.Duration
	// BusKey authenticates what the nodes of a deployment tell each other
	// over the bus (busauth.go): envelopes carried in wake-ups and session
	// ends. Every node must have the same; at least MinBusKey bytes.
	BusKey []byte
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Frames handles frame types other than "ack" (may be nil).
	Frames FrameHandler
	// BinaryFrames handles binary frames other than acks. A hub offers
	// binary frames (the subprotocol binframe.Subprotocol) only when it
	// is set.
	BinaryFrames BinaryFrameHandler
	// Ended, if set, is told of every session end this node acts on:
	// its own (EndSessions) and the other nodes' (from the bus, once its
	// tag and age are checked). cmd/kanald drops a revoked device from
	// what the send path keeps in memory.
	Ended func(SessionEnd)
	// StreamEnded, if set, is told the device of every stream of this
	// node that ends, once the stream is unregistered (Connected no longer
	// counts it). cmd/kanald has web push, which skips the devices
	// connected here, look at the device's mailbox then.
	StreamEnded func(device string)
	// OriginPatterns lists the web origins allowed to open a stream from a
	// browser (see websocket.AcceptOptions); empty allows same-origin only.
	OriginPatterns []string
	// WriteTimeout overrides the package's WriteTimeout (zero: default).
	WriteTimeout time.Duration
	// PingInterval overrides the package's PingInterval (zero: default).
	PingInterval time.Duration
	// wakeGrace is how long a stream seen behind its head after a ping
	// waits for the wake-up before it reads (pinged.go); zero: a tenth
	// of PingInterval, at most maxWakeGrace. Set by tests only.
	wakeGrace time.Duration
	// FrameTimeout overrides the package's FrameTimeout (zero: default).
	FrameTimeout time.Duration
	// MaxStreams overrides the package's MaxStreams (zero: default).
	MaxStreams int
}

// TypeTooManyStreams is the problem a stream request gets (429, before the
// upgrade) when its device already holds MaxStreams streams on the node.
var TypeTooManyStreams = web.NewType("too-many-streams")

// Hub holds this node's device connections.
type Hub struct {
	o     HubOptions
	mu    sync.Mutex
	conns map[string][]*conn // a device's streams on this node
	// pending counts the streams being upgraded: they hold their place
	// under MaxStreams from the check until they are registered, so a
	// burst of requests cannot open more than the limit.
	pending map[string]int

	carried, read atomic.Uint64                 // envelopes written from wake-ups, from mailbox reads
	forged        atomic.Uint64                 // bus messages whose tag did not verify
	undecodable   atomic.Uint64                 // genuine wake-ups and fan-outs that did not decode
	ackWrites     atomic.Uint64                 // acknowledgement writes to the store
	ackFrames     atomic.Uint64                 // well-formed ack frames read
	wakeUps       atomic.Uint64                 // wake-ups dispatched to a device's streams
	fetches       atomic.Uint64                 // reads of a mailbox by a stream
	headLooks     atomic.Uint64                 // pinged streams whose device's head was looked at
	lateReads     atomic.Uint64                 // of them, those that read after the wake-up's grace
	pingTimeouts  [numStallCauses]atomic.Uint64 // streams closed for a ping not answered, by cause
	writeTimeouts [numStallCauses]atomic.Uint64 // streams dropped for a write not finished in time, by cause

	// Streams whose session recheck is due, waiting to be checked
	// together (recheck.go); sessionChecks counts the calls.
	rechecks      gathered[*conn]
	sessionChecks atomic.Uint64

	// Streams whose ping was answered, waiting for one look at their
	// devices' heads (pinged.go).
	pinged gathered[*conn]

	// Every connection subscribes to its device's wake-up subject, so
	// NATS sends a node only the wake-ups of its own devices; all those
	// subscriptions deliver into this one channel, read by one goroutine
	// (dispatch), rather than each running a goroutine of its own.
	//
	// On the embedded bus the node is the only one (the embedded NATS
	// server takes no other connection), so every wake-up is for a device
	// of this node: one subscription to all of them (allWakes) does, and
	// saves each device's subscription — about 1 KiB of the node's memory
	// per connected device, half in the client, half in the server.
	//
	// On the embedded bus the hubs' own wake-ups do not go through NATS at
	// all (bus.PublishLocal): they are put into local directly, and
	// allWakes takes only what another publisher on the NATS connection
	// sends into wakes, which dispatch checks as it checks everything.
	// Only this process puts wake-ups into local, so they carry no tag
	// (Deliver): sealing and checking them cost 3.6 % of a busy single
	// node's CPU and proved nothing.
	//
	// On an external bus the hub puts its own wake-ups into local too,
	// unsealed, and publishes them sealed for the other nodes: the bus
	// does not echo (bus.Echoes), so NATS writes none of them back to be
	// read, checked and dispatched a second time. What NATS brings into
	// wakes is another node's.
	wakes    chan *bus.Msg
	local    chan *bus.Msg
	allWakes *bus.Subscription
	unlocal  func() // ends the local subscription to wake-ups
	subMu    sync.Mutex
	subs     map[string]*wakeSub // by device: one per device, shared by its streams
	stop     chan struct{}
	stopOnce sync.Once
	endSub   *bus.Subscription
	fanSub   *bus.Subscription // broadcasts' fan-outs (fanout.go)
}

// Errors HubOptions.Check returns (wrapped) for a session that is over.
var (
	ErrSessionEnded  = errors.New("mailbox: session ended")
	ErrDeviceRevoked = errors.New("mailbox: device revoked")
)

// Session is what a stream is bound to: the session it was opened with.
type Session struct {
	Device  string
	Account string
	Family  string    // the login the session belongs to
	Expires time.Time // the stream closes then
	Ref     string    // what HubOptions.Check finds the session by
}

// NewHub returns a Hub and subscribes to the bus subject on which nodes
// tell each other that sessions ended. Close stops it.
func NewHub(o HubOptions) (*Hub, error) {
	if len(o.BusKey) < MinBusKey {
		return nil, fmt.Errorf("mailbox: a bus key of at least %d bytes is required", MinBusKey)
	}
	if o.Session == nil || o.Check == nil {
		return nil, errors.New("mailbox: Session and Check are required")
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = WriteTimeout
	}
	if o.SessionRecheck <= 0 {
		o.SessionRecheck = SessionRecheckInterval
	}
	if o.PingInterval <= 0 {
		o.PingInterval = PingInterval
	}
	if o.wakeGrace <= 0 {
		o.wakeGrace = min(maxWakeGrace, o.PingInterval/10)
	}
	if o.FrameTimeout <= 0 {
		o.FrameTimeout = FrameTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxStreams <= 0 {
		o.MaxStreams = MaxStreams
	}
	h := &Hub{o: o, conns: map[string][]*conn{}, pending: map[string]int{}, subs: map[string]*wakeSub{}, wakes: make(chan *bus.Msg, wakeBuffer), stop: make(chan struct{})}
	h.local = make(chan *bus.Msg, wakeBuffer)
	sub, err := o.Bus.Subscribe(subjectEnd, h.takeEnd)
	if err != nil {
		return nil, err
	}
	if h.fanSub, err = o.Bus.Subscribe(subjectFanout, h.takeFanout); err != nil {
		_ = sub.Unsubscribe()
		return nil, err
	}
	if o.Bus.Embedded() {
		if h.allWakes, err = o.Bus.ChanSubscribe(subjectWake+"*", h.wakes); err != nil {
			_ = sub.Unsubscribe()
			_ = h.fanSub.Unsubscribe()
			return nil, err
		}
	}
	h.unlocal = o.Bus.LocalSubscribe(subjectWake, h.local)
	// The subscription reaches the server with the connection's next
	// flush; until then a session end sent by another node would pass
	// this one by. Flush now, before any stream is served.
	ctx, cancel := context.WithTimeout(context.Background(), o.WriteTimeout)
	err = o.Bus.Ping(ctx)
	cancel()
	if err != nil {
		_ = sub.Unsubscribe()
		_ = h.fanSub.Unsubscribe()
		if h.allWakes != nil {
			_ = h.allWakes.Unsubscribe()
		}
		h.unlocal()
		return nil, fmt.Errorf("mailbox: subscribe to session ends: %w", err)
	}
	h.endSub = sub
	go h.dispatch()
	return h, nil
}

// HubStats counts the envelopes this node's streams wrote, by where they
// came from.
type HubStats struct {
	Carried uint64 // carried by the wake-up, written without a mailbox read
	Read    uint64 // read from the mailbox: backlog, gaps, large envelopes
	// Forged counts bus messages (wake-ups carrying envelopes, session
	// ends) whose tag did not verify; none of them was acted on.
	Forged uint64
	// Undecodable counts wake-ups with a genuine tag whose envelopes did
	// not decode (a node of an earlier version sends them as JSON): each
	// was taken as a plain wake-up, the streams read the mailbox. It
	// counts fan-outs with a genuine tag that did not decode too: their
	// devices' streams read the mailbox at their next ping.
	Undecodable uint64
	// AckWrites counts the writes that deleted acknowledged envelopes.
	AckWrites uint64
	// AckFrames counts the well-formed ack frames read from devices.
	AckFrames uint64
	// SessionChecks counts the gathered session rechecks: calls of
	// HubOptions.CheckSessions.
	SessionChecks uint64
	// WakeUps counts the wake-ups that reached a device with streams on
	// this node: one per wake-up, however many streams the device has.
	WakeUps uint64
	// Fetches counts the reads of a mailbox by this node's streams.
	Fetches uint64
	// HeadLooks counts the answered pings after which the stream's
	// device's mailbox head was looked at (pinged.go).
	HeadLooks uint64
	// LateReads counts the looks that found a stream behind its
	// device's head with no wake-up for it within the grace: the stream
	// read its mailbox (a lost wake-up, or envelopes deleted before the
	// stream opened). A look that failed is not counted.
	LateReads uint64
	// PingTimeouts counts the streams closed with 4008 because a ping
	// was not answered in time, by what the socket held then.
	PingTimeouts [numStallCauses]uint64
	// WriteTimeouts counts the streams dropped (no close frame could
	// reach the device) because a write did not finish in time, by what
	// the socket held then.
	WriteTimeouts [numStallCauses]uint64
}

// Stats returns the counters since the hub started.
func (h *Hub) Stats() HubStats {
	s := HubStats{Carried: h.carried.Load(), Read: h.read.Load(), Forged: h.forged.Load(), Undecodable: h.undecodable.Load(), AckWrites: h.ackWrites.Load(), AckFrames: h.ackFrames.Load(), WakeUps: h.wakeUps.Load(), Fetches: h.fetches.Load(), HeadLooks: h.headLooks.Load(), LateReads: h.lateReads.Load(), SessionChecks: h.sessionChecks.Load()}
	for i := range s.PingTimeouts {
		s.PingTimeouts[i] = h.pingTimeouts[i].Load()
		s.WriteTimeouts[i] = h.writeTimeouts[i].Load()
	}
	return s
}

// A StallCause is what a stream's socket held when the stream was closed
// for an unanswered ping or a write that did not finish in time: which
// side was slow.
type StallCause int

const (
	// StallUnread: bytes from the device waited unread on this node.
	// The device was sending (perhaps the pong); this node did not read
	// in time: its read loop waited, or got no CPU.
	StallUnread StallCause = iota
	// StallUnsent: bytes this node wrote waited in its send queue: the
	// device was not taking them.
	StallUnsent
	// StallQuiet: both queues were empty. After a ping: the device took
	// everything and answered nothing. After a write: the write never
	// reached the socket; this node's writer waited, or got no CPU.
	StallQuiet
	// StallUnknown: the socket's queues could not be asked (a socket
	// without syscall.RawConn, or a system other than Linux).
	StallUnknown
	numStallCauses
)

func (c StallCause) String() string {
	switch c {
	case StallUnread:
		return "unread"
	case StallUnsent:
		return "unsent"
	case StallQuiet:
		return "quiet"
	}
	return "unknown"
}

// StallCauses are the causes in the order of HubStats.PingTimeouts and
// WriteTimeouts.
var StallCauses = [numStallCauses]StallCause{StallUnread, StallUnsent, StallQuiet, StallUnknown}

// pingTimedOut counts a ping that sock's stream did not answer, by what
// sock's queues hold now (the ping's timeout has just passed). Bytes
// waiting unread come first: then this node cannot tell whether the pong
// is among them.
func (h *Hub) pingTimedOut(sock *idleConn) {
	h.pingTimeouts[stallCause(sock, false)].Add(1)
}

// writeTimedOut counts a stream whose write ran past its deadline, by
// what sock's queues held then. Bytes waiting to be sent come first: a
// full send queue is what holds a write back.
func (h *Hub) writeTimedOut(sock *idleConn) {
	h.writeTimeouts[stallCause(sock, true)].Add(1)
}

func stallCause(sock *idleConn, sentFirst bool) StallCause {
	if sock == nil {
		return StallUnknown
	}
	in, out, ok := sock.queues()
	switch {
	case !ok:
		return StallUnknown
	case sentFirst && out > 0:
		return StallUnsent
	case in > 0:
		return StallUnread
	case out > 0:
		return StallUnsent
	}
	return StallQuiet
}

// Close stops the hub's wake-up dispatch and its session-end subscription.
// Connections are closed through the Tracker, not here.
func (h *Hub) Close() {
	h.stopOnce.Do(func() {
		close(h.stop)
		_ = h.endSub.Unsubscribe()
		_ = h.fanSub.Unsubscribe()
		if h.allWakes != nil {
			_ = h.allWakes.Unsubscribe()
		}
		h.unlocal()
	})
}

// dispatch hands each wake-up to the device's connections on this node:
// every stream gets the live envelopes. A wake-up for a device that has
// just disconnected finds none and is dropped: the envelope waits in the
// mailbox.
func (h *Hub) dispatch() {
	for {
		select {
		case <-h.stop:
			return
		case m := <-h.wakes:
			h.wake(m, true)
		case m := <-h.local:
			h.wake(m, false)
		}
	}
}

// wake hands the wake-up m to its device's streams on this node. sealed
// says whether m came over NATS, where a tag must prove that a hub made
// it, or from this process (local), where none is carried.
func (h *Hub) wake(m *bus.Msg, sealed bool) {
	dev := strings.TrimPrefix(m.Subject, subjectWake)
	cs := h.streams(dev)
	if len(cs) == 0 {
		return
	}
	h.wakeUps.Add(1)
	// Envelopes carried without a valid tag are not the store's: they are
	// dropped, and the wake-up counts as a plain one, so the stream reads
	// the mailbox, which is the truth. So does one whose envelopes do not
	// decode. Those that do are decoded here, once, for all the device's
	// streams.
	var carried *carriedWake
	if len(m.Data) > 0 {
		payload, ok := m.Data, true
		if sealed {
			payload, ok = openBus(h.o.BusKey, purposeWake, m.Subject, m.Data)
		}
		if !ok {
			h.forged.Add(1)
		} else if w, err := decodeWake(dev, payload); err != nil {
			h.undecodable.Add(1)
		} else {
			carried = w
		}
	}
	for _, c := range cs {
		c.offer(carried)
	}
}

// streams returns a copy of the device's streams on this node.
func (h *Hub) streams(device string) []*conn {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.conns[device])
}

// wakeSub is a device's wake-up subscription on this node. The device's
// streams share it: a subscription each would make NATS deliver every
// wake-up once per stream, and dispatch hand each copy to every stream.
type wakeSub struct {
	sub  *bus.Subscription
	refs int
}

// subscribeWake subscribes to the device's wake-ups, or shares the
// subscription one of its streams holds; release gives it back. On the
// embedded bus the node's subscription to all wake-ups has them already.
func (h *Hub) subscribeWake(device string) (release func(), err error) {
	if h.allWakes != nil {
		return func() {}, nil
	}
	h.subMu.Lock()
	defer h.subMu.Unlock()
	s := h.subs[device]
	if s == nil {
		sub, err := h.o.Bus.ChanSubscribe(subjectWake+device, h.wakes)
		if err != nil {
			return nil, err
		}
		s = &wakeSub{sub: sub}
		h.subs[device] = s
	}
	s.refs++
	return func() {
		h.subMu.Lock()
		defer h.subMu.Unlock()
		if s.refs--; s.refs == 0 {
			_ = s.sub.Unsubscribe()
			delete(h.subs, device)
		}
	}, nil
}

const (
	subjectWake = "kanal.mbox.wake."
	subjectEnd  = "kanal.mbox.end"
)

// Notify wakes the recipient devices of envelopes that have just been
// committed, wherever their sockets are.
func (h *Hub) Notify(devices ...string) {
	for _, d := range devices {
		h.publishWake(d, nil)
	}
}

// publishWake wakes device d's streams on every node. data is nil for a
// plain wake-up, or a carried one's payload after room for the tag
// (tagSize bytes) when the bus is external.
//
// On the embedded bus the wake-up stays in this process, untagged
// (bus.PublishLocal). On an external bus it goes to NATS sealed, for the
// streams of other nodes, and to this node's own streams through local,
// unsealed: the bus does not echo it back (bus.Echoes).
func (h *Hub) publishWake(d string, data []byte) {
	subject := subjectWake + d
	if h.o.Bus.Embedded() {
		if err := h.o.Bus.PublishLocal(subject, data); err != nil {
			h.o.Logger.Warn("mailbox: wake-up not published", "device", d, "err", err)
		}
		return
	}
	var payload []byte
	if data != nil {
		payload = data[tagSize:]
		data = sealInPlace(h.o.BusKey, purposeWake, subject, data)
	}
	if err := h.o.Bus.Publish(subject, data); err != nil {
		// Not fatal: the envelope is durable, the device gets it on the
		// next wake-up or reconnect.
		h.o.Logger.Warn("mailbox: wake-up not published", "device", d, "err", err)
	}
	select {
	case h.local <- &bus.Msg{Subject: subject, Data: payload}:
	default: // full: dropped, as NATS drops for a slow consumer
	}
}

// Deliver wakes the recipient devices of envelopes that have just been
// committed, as Notify does, and carries the envelopes in the wake-up
// when they are small (wake.go): the node that holds a recipient's socket
// then writes them without reading them back from the mailbox. envs must
// carry the ids and sequence numbers the append assigned.
func (h *Hub) Deliver(envs []Envelope) {
	// Each recipient's envelopes, in the order given (their seqs'), as one
	// slice: a stable sort of their indices by recipient, and a slice of
	// envs itself wherever a recipient's envelopes lie next to each other
	// there, as a recipient's one envelope of a commit always does. A map
	// of slices cost an allocation per recipient, and the map's growth.
	idx := make([]int, len(envs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return strings.Compare(envs[a].Recipient, envs[b].Recipient) })
	// On the embedded bus the wake-ups stay in this process (h.local) and
	// carry no tag; over NATS each is sealed (publishWake).
	head := tagSize
	if h.o.Bus.Embedded() {
		head = 0
	}
	for len(idx) > 0 {
		d := envs[idx[0]].Recipient
		n, adjacent := 1, true
		for n < len(idx) && envs[idx[n]].Recipient == d {
			adjacent = adjacent && idx[n] == idx[n-1]+1
			n++
		}
		group := envs[idx[0] : idx[0]+n]
		if !adjacent {
			group = make([]Envelope, n)
			for k, i := range idx[:n] {
				group[k] = envs[i]
			}
		}
		idx = idx[n:]
		var data []byte
		// Room for the tag first, then the payload; envelopes that cannot
		// be carried leave a plain wake-up.
		if b, err := appendWake(make([]byte, head, head+wakeSizeHint(group)), group); err == nil {
			data = b
		}
		h.publishWake(d, data)
	}
}

// SessionEnd names the sessions whose streams must close, on every node:
// those of one login (Family), of one device (Device), or of one account
// except one login (Account, KeepFamily). Exactly one of Family, Device
// and Account is set.
type SessionEnd struct {
	Reason     string `json:"reason"`            // shown in the close frame
	Revoked    bool   `json:"revoked,omitempty"` // the device was revoked: StatusRevoked
	Family     string `json:"family,omitempty"`
	Device     string `json:"device,omitempty"`
	Account    string `json:"account,omitempty"`
	KeepFamily string `json:"keep_family,omitempty"`
	// At is when it was published (Unix milliseconds, set by EndSessions):
	// a node ignores one older than maxEndAge, so that a session end
	// captured off the bus cannot be replayed later against the streams
	// of the account's new logins.
	At int64 `json:"at"`
}

func (e *SessionEnd) matches(s *Session) bool {
	switch {
	case e.Family != "":
		return s.Family == e.Family
	case e.Device != "":
		return s.Device == e.Device
	case e.Account != "":
		return s.Account == e.Account && s.Family != e.KeepFamily
	}
	return false
}

func (e *SessionEnd) code() websocket.StatusCode {
	if e.Revoked {
		return StatusRevoked
	}
	return StatusSessionEnded
}

// EndSessions closes the streams of the sessions e names: at once on this
// node, and on the others through the bus. Call it after the change that
// ended them has committed.
func (h *Hub) EndSessions(e SessionEnd) error {
	e.At = h.o.Now().UnixMilli()
	h.endLocal(&e)
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return h.o.Bus.Publish(subjectEnd, sealBus(h.o.BusKey, purposeEnd, subjectEnd, b))
}

// Disconnect closes the device's streams on every node: it was revoked.
func (h *Hub) Disconnect(device string) error {
	return h.EndSessions(SessionEnd{Reason: "device revoked", Revoked: true, Device: device})
}

// takeEnd acts on a session end from the bus, if it is genuine and fresh.
func (h *Hub) takeEnd(m *bus.Msg) {
	payload, ok := openBus(h.o.BusKey, purposeEnd, m.Subject, m.Data)
	if !ok {
		h.forged.Add(1)
		h.o.Logger.Warn("mailbox: session end with a bad tag ignored")
		return
	}
	var e SessionEnd
	if err := web.DecodeStrict(payload, &e, maxEndMessage); err != nil {
		h.o.Logger.Warn("mailbox: malformed session end ignored", "err", err)
		return
	}
	if age := h.o.Now().Sub(time.UnixMilli(e.At)); age > maxEndAge || age < -maxEndAge {
		h.o.Logger.Warn("mailbox: stale session end ignored (are the nodes' clocks apart?)", "age", age)
		return
	}
	h.endLocal(&e)
}

func (h *Hub) endLocal(e *SessionEnd) {
	if h.o.Ended != nil {
		h.o.Ended(*e)
	}
	var hit []*conn
	h.mu.Lock()
	if e.Device != "" && e.Family == "" {
		hit = append(hit, h.conns[e.Device]...)
	} else {
		for _, cs := range h.conns {
			for _, c := range cs {
				if e.matches(&c.sess) {
					hit = append(hit, c)
				}
			}
		}
	}
	h.mu.Unlock()
	for _, c := range hit {
		c.close(e.code(), e.Reason)
	}
}

// Connected reports whether device has a socket on this node.
func (h *Hub) Connected(device string) bool {
	return h.Streams(device) > 0
}

// Streams returns how many streams device holds on this node.
func (h *Hub) Streams(device string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns[device])
}

// ServeHTTP upgrades an authenticated request to the device's stream.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sess, ok := h.o.Session(r)
	device := sess.Device
	if !ok || !ValidDeviceID(device) {
		web.WriteProblem(w, r, web.Errorf(http.StatusUnauthorized, web.TypeUnauthorized, "Unauthorized", "a device session is required"))
		return
	}
	// Without the bus a stream would get no live envelopes and no word of
	// its session's end: refuse it before the upgrade; the device tries
	// again later.
	if !h.o.Bus.Connected() {
		w.Header().Set("Retry-After", "5")
		web.WriteProblem(w, r, web.Errorf(http.StatusServiceUnavailable, web.TypeUnavailable, "Unavailable", "the server cannot deliver live messages right now; try again shortly"))
		return
	}
	if !h.reserve(device) {
		w.Header().Set("Retry-After", "5")
		web.WriteProblem(w, r, web.Errorf(http.StatusTooManyRequests, TypeTooManyStreams, "Too many streams",
			"this device already has %d streams open on this server; close one first", h.o.MaxStreams).With("max_streams", h.o.MaxStreams))
		return
	}
	// The server's read and write timeouts are meant for requests; a
	// stream lives for hours and has its own per-write deadline and pings.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	// A browser offers "kanal" beside the subprotocol that carries its
	// token (identity.WebsocketBearerPrefix) and needs one selected. A
	// client that offers binary frames gets them (the first of these the
	// client offers is selected); one that does not gets JSON.
	protocols := []string{"kanal"}
	if h.o.BinaryFrames != nil {
		protocols = []string{binframe.Subprotocol, "kanal"}
	}
	var sock *idleConn
	ws, err := websocket.Accept(smallBuffers{w, &sock}, r, &websocket.AcceptOptions{OriginPatterns: h.o.OriginPatterns,
		Subprotocols: protocols,
		// No permessage-deflate: envelopes are ciphertext, which does not
		// compress, and a deflate state would cost every stream memory
		// (coder/websocket's default, said here so it stays so).
		CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		h.release(device)
		return // Accept has written the error response
	}
	ws.SetReadLimit(MaxFrame)
	// The request context ends when the handler returns; the stream lives
	// on its own context, cancelled by close. It keeps none of the
	// request's values: its session is all a stream needs.
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{hub: h, device: device, sess: sess, ws: ws, sock: sock, ctx: ctx, cancel: cancel,
		inflight: map[string]bool{}, done: make(chan struct{}),
		bin: strings.EqualFold(ws.Subprotocol(), binframe.Subprotocol)}
	untrack, ok := h.o.Tracker.Track(func() { c.close(websocket.StatusGoingAway, "server shutting down"); <-c.done })
	if !ok {
		h.release(device)
		ws.Close(websocket.StatusGoingAway, "server shutting down")
		cancel()
		return
	}
	h.register(c)
	c.untrack = untrack
	// The handler returns and net/http lets go of the hijacked connection,
	// its request and the deep stack that served the upgrade. start runs
	// on a goroutine of its own and ends once the stream is set up; an idle
	// stream then holds one goroutine, its reader, on a fresh stack.
	go c.start()
}

// streamBuffer is the size of a stream's read and of its write buffer,
// where the socket offers no syscall.RawConn (elsewhere an idle stream
// holds none: idleconn.go).
// net/http hands a hijacked connection over with 4 KiB buffers each,
// which coder/websocket keeps for the connection's life: 8 KiB that an
// idle stream holds for nothing. Frames from a device (acks, sends of a
// few hundred bytes) fit in the read buffer; a longer frame is read
// straight into its message by bufio. The write buffer holds a frame's
// header with its payload up to this size, so a typical envelopes frame
// is still one write; a larger frame takes two.
const (
	streamReadBuffer  = 1 << 10
	streamWriteBuffer = 2 << 10
	// idleBufio is bufio's smallest buffer, which coder/websocket is
	// handed over an idleConn: it holds a frame's header while it is read
	// or written.
	idleBufio = 16
)

// frameBuffers holds buffers binary frames are encoded in and frames are
// read into, shared by all streams: the websocket write copies a frame out
// before it returns, a read is copied out at its length (readAllPooled),
// and an idle stream holds no buffer of its own.
var frameBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledFrame: a buffer a large frame grew is not kept.
const maxPooledFrame = 64 << 10

func putFrameBuffer(b *[]byte) {
	if cap(*b) <= maxPooledFrame {
		frameBuffers.Put(b)
	}
}

// smallBuffers hands coder/websocket the hijacked connection with smaller
// buffers than net/http's. Bytes the client sent after its upgrade request
// and that net/http has already read are moved into the new read buffer.
// The idleConn it makes, if any, is left in sock.
type smallBuffers struct {
	http.ResponseWriter
	sock **idleConn
}

func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	n := brw.Reader.Buffered()
	var pre []byte
	if n > 0 {
		p, _ := brw.Reader.Peek(n)
		pre = bytes.Clone(p)
	}
	if ic := newIdleConn(nc, pre); ic != nil {
		*w.sock = ic
		// Buffers are borrowed only while bytes pass (idleconn.go); bufio's
		// own are its smallest.
		return ic, bufio.NewReadWriter(bufio.NewReaderSize(ic, idleBufio), bufio.NewWriterSize(ic, idleBufio)), nil
	}
	br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(pre), nc), max(streamReadBuffer, n))
	if n > 0 {
		// The bytes are in the buffer now; coder/websocket takes them from
		// there and reads the connection itself from then on.
		if _, err := br.Peek(n); err != nil {
			nc.Close()
			return nil, nil, err
		}
	}
	return nc, bufio.NewReadWriter(br, bufio.NewWriterSize(nc, streamWriteBuffer)), nil
}

// reserve takes a place for one more stream of device, if it has fewer
// than MaxStreams on this node (open or being opened).
func (h *Hub) reserve(device string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.conns[device])+h.pending[device] >= h.o.MaxStreams {
		return false
	}
	h.pending[device]++
	return true
}

// release gives back a place reserve took for a stream that did not open.
func (h *Hub) release(device string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.unpend(device)
}

func (h *Hub) unpend(device string) {
	if h.pending[device]--; h.pending[device] <= 0 {
		delete(h.pending, device)
	}
}

// register turns the stream's reserved place into an open stream. The
// device's other streams stay open.
func (h *Hub) register(c *conn) {
	h.mu.Lock()
	h.unpend(c.device)
	h.conns[c.device] = append(h.conns[c.device], c)
	h.mu.Unlock()
}

func (h *Hub) unregister(c *conn) {
	h.mu.Lock()
	cs := slices.DeleteFunc(h.conns[c.device], func(o *conn) bool { return o == c })
	if len(cs) == 0 {
		delete(h.conns, c.device)
	} else {
		h.conns[c.device] = cs
	}
	h.mu.Unlock()
}

// Frames exchanged on the stream. Server to device: "envelopes" (a batch
// in mailbox order), "synced" (the backlog is through), "problem", and
// replies of frame handlers. Device to server: "ack" and handled types.
type (
	envelopesFrame struct {
		Type      string     `json:"type"`
		Envelopes []Envelope `json:"envelopes"`
	}
	typeFrame struct {
		Type string `json:"type"`
	}
	problemFrame struct {
		Type    string       `json:"type"`
		Problem *web.Problem `json:"problem"`
	}
)

const maxCloseReason = 120

// conn is one of a device's sockets. One goroutine reads, for as long as
// the socket is open. Writing the mailbox (the pump) runs on a goroutine
// only while there is something to write: a wake-up, an acknowledgement
// that frees the window, or the backlog at the start. The ping, the
// session's expiry and its periodic check share one timer, not a
// goroutine. An idle stream is its reader, its timer and its buffers.
type conn struct {
	hub     *Hub
	device  string
	sess    Session
	ws      *websocket.Conn
	sock    *idleConn // ws's socket; nil where it offers no RawConn
	ctx     context.Context
	cancel  context.CancelFunc
	untrack func()

	writeMu sync.Mutex // the pump, pings' failures and frame replies write
	bin     bool       // the stream speaks binary frames (binframe.Subprotocol)

	ackMu sync.Mutex     // one acknowledgement write at a time
	acks  sync.WaitGroup // the acknowledgement writer, while it runs

	pumps sync.WaitGroup // the pump's goroutine, while it runs
	// One timer serves the ping, the session's recheck and its expiry:
	// it fires at the earliest of the three (times of the monotonic
	// clock, so the hub's Now only decides how long the session has).
	timer                        *time.Timer
	nextPing, nextCheck, expires time.Time
	// cut closes the stream when a frame is not finished in time
	// (readFrame); made at the first frame and re-armed for each, rather
	// than a timer per frame. Only the read loop touches it.
	cut *time.Timer

	mu sync.Mutex
	// inflight holds the envelopes sent and not yet deleted: false until
	// the device acknowledges one, true while its deletion waits in acked.
	inflight map[string]bool
	acked    []string  // acknowledged, to be deleted with the next write
	lastAck  time.Time // of the last acknowledgement write
	ackTimer bool      // a write of acked is scheduled (on ackT)
	ackBusy  bool      // the acknowledgement writer runs
	cursor   int64     // last seq sent on this connection
	carried  wakeList  // envelopes carried by wake-ups since the pump last looked
	fetch    bool      // a wake-up came without envelopes: read the mailbox
	held     bool      // the pump waits for acks: MaxInFlight are unacknowledged
	synced   bool      // the backlog is through and "synced" was sent
	ready    bool      // start has checked the session: a signal may start the pump
	pumping  bool      // the pump's goroutine runs
	again    bool      // work came while it ran: it looks once more
	stopped  bool      // finishing: no pump starts any more
	pumpErr  error     // what ended the pump, if it failed
	closing  bool
	closeErr struct {
		code   websocket.StatusCode
		reason string
	}
	// head is a last seq of the device's mailbox read before the pump's
	// next read of it (at the backlog, or by the look after a ping): a
	// read that drains the mailbox moves cursor up to it, past the
	// envelopes deleted before this connection. Without it a device that
	// reconnects to an empty mailbox keeps cursor 0 below its head, takes
	// no carried envelope (each looks like a gap) and reads its mailbox
	// after every ping.
	head int64
	// ackT runs flushLater; made at the first acknowledgement and
	// re-armed when ackTimer is false, rather than a timer made per write.
	ackT *time.Timer
	done chan struct{} // closed when the stream is finished
}

// offer takes a wake-up: the envelopes it carries, or nil for a plain
// one, which makes the pump read the mailbox.
func (c *conn) offer(w *carriedWake) {
	c.mu.Lock()
	if w == nil || len(c.carried) >= maxCarriedWakes {
		c.fetch = true
		c.carried = nil
	} else if !c.fetch {
		c.carried = append(c.carried, w)
	}
	c.mu.Unlock()
	c.signal()
}

// nextCarried returns the carried envelopes that follow after in sequence
// order, ok when they are the whole of what comes next: they start at
// after+1 with no gap and fit in room. Anything else — a gap left by a
// wake-up still on its way or lost, too many, an envelope for another
// device — is not ok, and the pump reads the mailbox instead. When next
// is exactly one wake-up's envelopes in the order it carried them, frame
// is that wake-up's binary frame (nil if it has none), and next is the
// wake-up's own slice: the caller only reads either.
func nextCarried(device string, carried []*carriedWake, after int64, room int) (next []Envelope, frame []byte, ok bool) {
	if len(carried) == 1 {
		if es := carried[0].envs; len(es) <= room && inOrder(device, es, after) {
			return es, carried[0].frame, true
		}
	}
	for _, w := range carried {
		for _, e := range w.envs {
			if e.Recipient != device {
				return nil, nil, false
			}
			if e.Seq > after {
				next = append(next, e)
			}
		}
	}
	slices.SortFunc(next, func(a, b Envelope) int { return cmp.Compare(a.Seq, b.Seq) })
	next = slices.CompactFunc(next, func(a, b Envelope) bool { return a.Seq == b.Seq })
	if len(next) > room || !inOrder(device, next, after) {
		return nil, nil, false
	}
	return next, nil, true
}

// inOrder says whether es are the device's envelopes after+1, after+2, …
func inOrder(device string, es []Envelope, after int64) bool {
	for i := range es {
		if es[i].Recipient != device || es[i].Seq != after+1+int64(i) {
			return false
		}
	}
	return true
}

// signal tells the pump there is work: it starts the pump's goroutine,
// or has the running one look again before it ends.
func (c *conn) signal() {
	c.mu.Lock()
	switch {
	case c.stopped:
	case !c.ready:
		// The stream is registered, so wake-ups reach it, but its session
		// is not checked yet: nothing of the mailbox is written before
		// that. start signals once it is; the backlog read then finds
		// what this signal was for.
	case c.pumping:
		c.again = true
	default:
		c.pumping, c.again = true, false
		c.pumps.Add(1)
		go c.runPump()
	}
	c.mu.Unlock()
}

// runPump writes until nothing is left to write, then ends; the next
// signal starts it again.
func (c *conn) runPump() {
	defer c.pumps.Done()
	for {
		more, err := c.pump()
		c.mu.Lock()
		if err != nil || c.ctx.Err() != nil {
			if err != nil && c.pumpErr == nil {
				c.pumpErr = err
			}
			c.pumping = false
			c.mu.Unlock()
			if err != nil {
				c.cancel()
			}
			return
		}
		if more || c.again {
			c.again = false
			c.mu.Unlock()
			continue
		}
		c.pumping = false
		c.mu.Unlock()
		return
	}
}

// close ends the connection with code; the first call wins.
func (c *conn) close(code websocket.StatusCode, reason string) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing = true
	if len(reason) > maxCloseReason {
		// A close frame's reason holds at most 123 bytes.
		reason = strings.ToValidUTF8(reason[:maxCloseReason], "")
	}
	c.closeErr.code, c.closeErr.reason = code, reason
	c.mu.Unlock()
	c.cancel()
}

// start sets the stream up — the wake-up subscription, the session check
// — then starts its timers, its pump for the backlog and its reader, and
// returns. finish runs when the stream's context ends, whoever ends it.
func (c *conn) start() {
	log := c.hub.o.Logger.With("device", c.device)
	// Subscribe before the first read of the mailbox, so an envelope
	// committed in between is not missed: it either shows in the read or
	// wakes us afterwards.
	release, err := c.hub.subscribeWake(c.device)
	if err != nil {
		log.Warn("mailbox: subscribe", "err", err)
		c.ws.Close(websocket.StatusInternalError, "try again")
		c.end(nil)
		return
	}
	// The subscription reaches the NATS server with the connection's next
	// flush; a wake-up published before that passes this node by, and its
	// envelope would wait for the next ping's read. One round trip to the
	// bus per connect closes that gap; if the bus is slow the stream goes
	// on, and the pings' reads still find everything.
	if c.hub.allWakes == nil {
		pctx, cancel := context.WithTimeout(c.ctx, c.hub.o.WriteTimeout)
		if err := c.hub.o.Bus.Ping(pctx); err != nil {
			log.Debug("mailbox: flushing the wake-up subscription", "err", err)
		}
		cancel()
	}

	if ended, err := c.checkSession(); ended {
		c.mu.Lock()
		code, reason := c.closeErr.code, c.closeErr.reason
		c.mu.Unlock()
		if code == 0 {
			code = websocket.StatusGoingAway
		}
		c.ws.Close(code, reason)
		c.end(release)
		return
	} else if err != nil {
		log.Warn("mailbox: session check", "err", err)
		c.ws.Close(websocket.StatusTryAgainLater, "try again")
		c.end(release)
		return
	}

	// The stream ends with its session: at its expiry, and when a check
	// finds it ended (should the word of its end have been lost).
	now := time.Now()
	c.mu.Lock()
	c.nextPing, c.nextCheck = now.Add(firstAfter(c.hub.o.PingInterval)), now.Add(firstAfter(c.hub.o.SessionRecheck))
	c.expires = now.Add(c.sess.Expires.Sub(c.hub.o.Now()))
	c.timer = time.AfterFunc(c.untilNext(now), c.tick)
	c.ready = true
	c.mu.Unlock()
	context.AfterFunc(c.ctx, func() { c.finish(release) })
	c.signal()
	go c.readLoop()
}

// finish ends the stream once its context is done: it stops the timers,
// waits for the pump, writes the acknowledgements taken so far, closes
// the socket with the reason close recorded, and gives back the stream's
// place and subscription.
func (c *conn) finish(release func()) {
	c.mu.Lock()
	c.stopped = true
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
	c.pumps.Wait()
	c.acks.Wait()
	// Acknowledgements that came before the close are still written: the
	// device took those envelopes while its session was live.
	fctx, cancel := context.WithTimeout(context.Background(), c.hub.o.WriteTimeout)
	if ferr := c.flushAcks(fctx); ferr != nil {
		c.hub.o.Logger.Warn("mailbox: acknowledgements at close", "device", c.device, "err", ferr)
	}
	cancel()

	c.mu.Lock()
	code, reason, err := c.closeErr.code, c.closeErr.reason, c.pumpErr
	c.mu.Unlock()
	stalled := errors.Is(err, context.DeadlineExceeded)
	switch {
	case stalled && (code == 0 || code == websocket.StatusNormalClosure):
		// A write's deadline closes the socket, so the read loop may
		// have seen the connection end (1000) before the pump returned.
		code, reason = StatusTooSlow, "socket stalled"
	case code != 0:
	default:
		code, reason = websocket.StatusInternalError, "stream error"
	}
	if stalled {
		c.hub.writeTimedOut(c.sock)
	}
	if stalled || code == websocket.StatusInternalError {
		// A frame write ran past its deadline: the library has already
		// dropped the connection (a write's deadline closes it), and
		// with the peer's buffers full (writeTimedOut counts whether
		// they were) no close frame could reach it anyway. The device
		// sees the connection end (1006) and reconnects.
		c.ws.CloseNow()
	} else {
		c.ws.Close(code, reason)
	}
	c.hub.o.Logger.Debug("mailbox: stream closed", "device", c.device, "code", int(code), "reason", reason)
	c.end(release)
}

// end gives back what the stream held on the hub.
func (c *conn) end(release func()) {
	if release != nil {
		release()
	}
	c.hub.unregister(c)
	if c.hub.o.StreamEnded != nil {
		c.hub.o.StreamEnded(c.device)
	}
	c.cancel()
	close(c.done)
	c.untrack()
}

// firstAfter is how long after its start a stream's first ping or
// session check is due: a uniformly random point of its first interval,
// never later than a full one. Every later one follows a whole interval
// after the one before, so a stream keeps its offset. Streams that open
// together (a node's restart brings its devices back within seconds; a
// load test opens thousands before it measures) would otherwise ping and
// recheck together for as long as they live: a wave of pings, pongs and
// mailbox looks every PingInterval, and of session checks every
// SessionRecheckInterval. Spread, the node does the same work evenly.
func firstAfter(every time.Duration) time.Duration {
	return 1 + time.Duration(rand.Int64N(int64(every)))
}

// untilNext is the time from now to the earliest of the ping, the
// recheck and the expiry. c.mu is held.
func (c *conn) untilNext(now time.Time) time.Duration {
	return min(c.nextPing.Sub(now), c.nextCheck.Sub(now), c.expires.Sub(now))
}

// tick does what is due of the session's expiry, its recheck and the ping,
// then arms the timer for what comes next.
func (c *conn) tick() {
	now := time.Now()
	c.mu.Lock()
	expired, check, ping := !now.Before(c.expires), !now.Before(c.nextCheck), !now.Before(c.nextPing)
	c.mu.Unlock()
	if expired {
		c.close(StatusSessionEnded, "session expired")
		return
	}
	if check && c.hub.o.CheckSessions != nil {
		c.hub.recheckStream(c)
	} else if check {
		if ended, err := c.checkSession(); ended {
			return
		} else if err != nil {
			c.hub.o.Logger.Warn("mailbox: session check", "device", c.device, "err", err)
		}
	}
	if ping {
		pctx, cancel := context.WithTimeout(context.Background(), c.hub.o.WriteTimeout)
		err := c.ws.Ping(pctx)
		cancel()
		if c.ctx.Err() != nil {
			return
		}
		if err != nil {
			// No pong in time: the close says why (4008), with a close
			// frame if the socket still takes one. What the socket's
			// queues held says which side was slow (pingTimedOut).
			c.hub.pingTimedOut(c.sock)
			c.close(StatusTooSlow, "no answer to ping")
			return
		}
		// Then the mailbox is looked at: a wake-up lost on the way (NATS
		// delivers at most once; a node's queue overflows under load)
		// is noticed by the next one's gap, but the last of a burst has
		// no next one. This look bounds its delay by PingInterval (and
		// pingedDelay and the grace for a wake-up on its way); it is made
		// for many streams at once (pinged.go).
		c.hub.pingedStream(c)
	}
	now = time.Now()
	c.mu.Lock()
	if check {
		c.nextCheck = now.Add(c.hub.o.SessionRecheck)
	}
	if ping {
		c.nextPing = now.Add(c.hub.o.PingInterval)
	}
	if !c.stopped {
		c.timer.Reset(c.untilNext(now))
	}
	c.mu.Unlock()
}

// pump sends what the mailbox holds for the stream, once: the backlog
// first (then "synced"), later whatever the wake-ups brought, never more
// than MaxInFlight unacknowledged envelopes. more says there may be more
// to read right now.
func (c *conn) pump() (more bool, err error) {
	store := c.hub.o.Store
	c.mu.Lock()
	room := MaxInFlight - len(c.inflight)
	c.held = room <= 0
	after := c.cursor
	carried, fetch, synced, head := c.carried, c.fetch, c.synced, c.head
	c.carried, c.fetch = nil, false
	c.mu.Unlock()
	var batch []Envelope
	var frame []byte // batch's binary frame, when a wake-up carried it so
	fetched, drained := false, false
	if room > 0 {
		ok := false
		// Once the backlog is through, a wake-up that carries the next
		// envelopes saves reading them back.
		if synced && !fetch && len(carried) > 0 {
			batch, frame, ok = nextCarried(c.device, carried, after, room)
		}
		if !ok {
			if !synced {
				// The head before the backlog's read: every envelope up
				// to it is committed (a device's seqs are given out under
				// its head's lock), so a read that returns fewer than it
				// asked for has all of them that are left.
				if last, err := store.LastSeqs(c.ctx, []string{c.device}); err == nil {
					head = max(head, last[c.device])
				}
			}
			var err error
			c.hub.fetches.Add(1)
			limit := min(room, FetchBatch)
			batch, err = store.Fetch(c.ctx, c.device, after, limit)
			if err != nil {
				if c.ctx.Err() != nil {
					return false, nil
				}
				return false, err
			}
			fetched, drained = true, len(batch) < limit
			c.hub.read.Add(uint64(len(batch)))
		} else {
			c.hub.carried.Add(uint64(len(batch)))
		}
	}
	if len(batch) > 0 {
		c.mu.Lock()
		for _, e := range batch {
			c.inflight[e.ID] = false
		}
		c.cursor = batch[len(batch)-1].Seq
		if drained {
			c.cursor = max(c.cursor, head)
		}
		c.mu.Unlock()
		if c.bin && frame != nil {
			// The wake-up's own bytes: encoded once, on the node that
			// stored the envelopes, for every stream that takes them
			// (at most maxCarried bytes of ciphertext: one frame).
			if err := c.write(rawFrame(frame)); err != nil {
				return false, err
			}
		} else {
			for _, part := range splitBySize(batch, MaxFrameBytes) {
				if err := c.write(envelopesFrame{Type: "envelopes", Envelopes: part}); err != nil {
					return false, err
				}
			}
		}
		if fetched && len(batch) == min(room, FetchBatch) {
			return true, nil // there may be more right now
		}
	} else if drained {
		c.mu.Lock()
		c.cursor = max(c.cursor, head)
		c.mu.Unlock()
	}
	if !synced && room > 0 {
		c.mu.Lock()
		c.synced = true
		c.mu.Unlock()
		if err := c.write(typeFrame{Type: "synced"}); err != nil {
			return false, err
		}
	}
	return false, nil
}

// write writes one frame: v as JSON, or on a binary stream v's binary
// form (v must then be an encoding.BinaryAppender).
func (c *conn) write(v any) error {
	var b []byte
	typ := websocket.MessageText
	if !c.bin {
		var err error
		if b, err = json.Marshal(v); err != nil {
			return err
		}
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.ctx.Err() != nil {
		return nil // closing; run sends the close frame
	}
	if c.bin {
		a, ok := v.(encoding.BinaryAppender)
		if !ok {
			return fmt.Errorf("mailbox: no binary form of %T", v)
		}
		buf := frameBuffers.Get().(*[]byte)
		defer putFrameBuffer(buf)
		var err error
		if *buf, err = a.AppendBinary((*buf)[:0]); err != nil {
			return err
		}
		b, typ = *buf, websocket.MessageBinary
	}
	if err := c.writeFrame(typ, b); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return context.DeadlineExceeded
		}
		if c.ctx.Err() != nil {
			return nil
		}
		return err
	}
	return nil
}

// writeFrame writes one frame within the hub's WriteTimeout, and returns
// context.DeadlineExceeded if it runs past it. The write has a deadline of
// its own rather than the connection's context: cancelling a context
// mid-write makes the library drop the connection without a close frame,
// and a close must still be able to say why.
//
// On a socket (c.sock), the deadline is the socket's: set before the
// frame, cleared after it. A context with a deadline per frame cost a
// timer, its cancellation and coder/websocket's context.AfterFunc for
// every frame, 4 % of a busy node's CPU (docs/benchmarks.md, "Frame
// writes bounded by the socket's deadline"). A frame cut by the deadline
// drops the socket at once, as the library does when a write's context
// ends, keeping what its queues held for writeTimedOut (idleConn.drop).
func (c *conn) writeFrame(typ websocket.MessageType, b []byte) error {
	if c.sock == nil {
		ctx, cancel := context.WithTimeout(context.Background(), c.hub.o.WriteTimeout)
		defer cancel()
		err := c.ws.Write(ctx, typ, b)
		if err != nil && ctx.Err() != nil {
			return context.DeadlineExceeded
		}
		return err
	}
	if err := c.sock.SetWriteDeadline(time.Now().Add(c.hub.o.WriteTimeout)); err != nil {
		return err
	}
	if err := c.ws.Write(context.Background(), typ, b); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.sock.drop()
			return context.DeadlineExceeded
		}
		return err
	}
	return c.sock.SetWriteDeadline(time.Time{})
}

func (c *conn) readLoop() {
	for {
		// Read ends when the socket closes; it is not tied to c.ctx for the
		// same reason as write.
		typ, data, err := c.readFrame()
		if err != nil {
			if errors.Is(err, websocket.ErrMessageTooBig) {
				c.close(websocket.StatusMessageTooBig, "frame too large")
				return
			}
			c.close(websocket.StatusNormalClosure, "")
			return
		}
		if c.bin {
			if typ != websocket.MessageBinary {
				c.close(websocket.StatusUnsupportedData, "binary frames only")
				return
			}
			if !c.frameDone(c.handleBinary(data)) {
				return
			}
			continue
		}
		if typ != websocket.MessageText {
			c.close(websocket.StatusUnsupportedData, "text frames only")
			return
		}
		// A text frame is UTF-8 or the connection fails with 1007 (RFC
		// 6455 §8.1); encoding/json would read bytes that are not as
		// U+FFFD and go on.
		if !utf8.Valid(data) {
			c.close(websocket.StatusInvalidFramePayloadData, "text frame is not UTF-8")
			return
		}
		var head struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(data, &head); err != nil {
			c.close(websocket.StatusInvalidFramePayloadData, "frame is not JSON")
			return
		}
		if !c.frameDone(c.handle(head.Type, data)) {
			return
		}
	}
}

// frameDone acts on what handling a frame returned: a problem is written
// back and the stream goes on; any other error closes it with 1008. It
// says whether the stream goes on.
func (c *conn) frameDone(err error) bool {
	if err == nil {
		return true
	}
	var p *web.Problem
	if errors.As(err, &p) {
		if werr := c.write(problemFrame{Type: "problem", Problem: p}); werr != nil {
			c.close(websocket.StatusInternalError, "")
			return false
		}
		return true
	}
	c.close(websocket.StatusPolicyViolation, err.Error())
	return false
}

// handleBinary handles a binary frame: an ack here, anything else by
// HubOptions.BinaryFrames. A frame that does not decode breaks the
// protocol (1008); nothing of it is acted on.
func (c *conn) handleBinary(data []byte) error {
	if len(data) > 0 && data[0] == wire.FrameAck {
		ids, err := wire.DecodeAck(data)
		if err != nil {
			return fmt.Errorf("%w: %v", errBadFrame, err)
		}
		return c.checkAcks(ids)
	}
	reply, err := c.hub.o.BinaryFrames(c.ctx, c.device, data)
	if err != nil {
		return err
	}
	if reply != nil {
		return c.write(reply)
	}
	return nil
}

// readFrame reads the next frame, waiting for its start as long as the
// device likes but for its end at most FrameTimeout: a frame's bytes stay
// in memory until it is complete. A frame that takes longer closes the
// stream with 4008 — with a close frame, since the socket still takes
// writes; the read then ends when the connection does.
func (c *conn) readFrame() (websocket.MessageType, []byte, error) {
	typ, rd, err := c.ws.Reader(context.Background())
	if err != nil {
		return 0, nil, err
	}
	if c.cut == nil {
		c.cut = time.AfterFunc(c.hub.o.FrameTimeout, c.frameLate)
	} else {
		c.cut.Reset(c.hub.o.FrameTimeout)
	}
	data, err := readAllPooled(rd)
	c.cut.Stop()
	return typ, data, err
}

// readAllPooled is io.ReadAll into a pooled buffer, returning a copy of
// exactly the frame's length: one allocation per frame, where io.ReadAll
// began at 512 bytes and grew, two or three for a send of a few hundred
// bytes (a sixth of the bytes a busy node allocated; docs/benchmarks.md,
// "Frames read into pooled buffers"). The handlers keep slices of the
// frame (a send's ciphertexts), so it is copied out before the buffer
// goes back.
func readAllPooled(r io.Reader) ([]byte, error) {
	buf := frameBuffers.Get().(*[]byte)
	b := (*buf)[:0]
	var err error
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		var n int
		n, err = r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			break
		}
	}
	data := bytes.Clone(b)
	*buf = b
	putFrameBuffer(buf)
	if err == io.EOF {
		err = nil
	}
	return data, err
}

func (c *conn) frameLate() { c.close(StatusTooSlow, "frame not finished in time") }

var (
	errUnknownFrame = errors.New("unknown frame type")
	errBadFrame     = errors.New("bad ack frame")
)

// problemDetail is what a close reason says of a decoding error.
func problemDetail(err error) string {
	var p *web.Problem
	if errors.As(err, &p) {
		return p.Detail
	}
	return err.Error()
}

func (c *conn) handle(typ string, data []byte) error {
	switch typ {
	case "ack":
		var f struct {
			Type string   `json:"type"`
			IDs  []string `json:"ids"`
		}
		if err := web.DecodeStrict(data, &f, MaxFrame); err != nil {
			// Not an ack frame at all: the protocol is broken, and the
			// stream closes with 1008 as for any other bad frame. A
			// well-formed ack the server refuses gets a problem frame.
			return fmt.Errorf("%w: %s", errBadFrame, problemDetail(err))
		}
		return c.checkAcks(f.IDs)
	default:
		if c.hub.o.Frames == nil {
			return errUnknownFrame
		}
		reply, err := c.hub.o.Frames(c.ctx, c.device, typ, data)
		if err != nil {
			return err
		}
		if reply != nil {
			return c.write(reply)
		}
		return nil
	}
}

// checkAcks takes a well-formed ack's ids if the stream's rules allow
// them, or answers with a problem.
func (c *conn) checkAcks(ids []string) error {
	c.hub.ackFrames.Add(1)
	if len(ids) > MaxAckBatch {
		return web.Errorf(http.StatusBadRequest, web.TypeValidation, "Invalid ack", "at most %d ids per ack", MaxAckBatch)
	}
	for _, id := range ids {
		if len(id) == 0 || len(id) > 64 {
			return web.Errorf(http.StatusBadRequest, web.TypeValidation, "Invalid ack", "bad envelope id")
		}
	}
	return c.takeAcks(ids)
}

// splitBySize cuts a batch into runs whose ciphertexts add up to at most
// limit bytes, each with at least one envelope, so a frame stays small
// enough for a phone to take in one read.
func splitBySize(batch []Envelope, limit int) [][]Envelope {
	var out [][]Envelope
	start, size := 0, 0
	for i, e := range batch {
		if i > start && size+len(e.Ciphertext) > limit {
			out = append(out, batch[start:i])
			start, size = i, 0
		}
		size += len(e.Ciphertext)
	}
	return append(out, batch[start:])
}

// checkSession asks whether the stream's session is still live and closes
// the stream if it is not. err is a check that could not tell.
func (c *conn) checkSession() (ended bool, err error) {
	return c.sessionChecked(c.hub.o.Check(c.ctx, c.sess))
}

// sessionChecked acts on the result of a check of the stream's session:
// it closes the stream when the session has ended or its device is
// revoked.
func (c *conn) sessionChecked(err error) (ended bool, _ error) {
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, ErrDeviceRevoked):
		c.close(StatusRevoked, "device revoked")
		return true, nil
	case errors.Is(err, ErrSessionEnded):
		c.close(StatusSessionEnded, "session ended")
		return true, nil
	case c.ctx.Err() != nil:
		return true, nil // closing anyway
	}
	return false, err
}

// Acknowledgements. Each ack frame used to be a write; a device sending a
// flood of them made the server write as fast as it could read. Now only
// ids this stream sent and that are not acknowledged yet count — others
// are ignored, so a flood of made-up or repeated ids writes nothing — and
// what counts is written at most once per AckInterval, or at once when
// MaxAckBatch ids wait. The envelopes stay in flight until written, so
// the in-flight limit still holds the pump back meanwhile.
//
// The write runs off the read loop. Under load a commit waits behind the
// sends' group commit for seconds; a read loop waiting with it would take
// no pong and no further frame meanwhile — the device's ack writes would
// time out, its pings go unanswered (4008) — and every stream closed so
// would be sent its whole window again after the reconnect, more work
// for a server that has too much already.

func (c *conn) takeAcks(ids []string) error {
	now := c.hub.o.Now()
	c.mu.Lock()
	if c.closing || c.stopped {
		// The stream is closing (its session may have ended): nothing
		// more is taken from it.
		c.mu.Unlock()
		return nil
	}
	for _, id := range ids {
		if acked, sent := c.inflight[id]; sent && !acked {
			c.inflight[id] = true
			c.acked = append(c.acked, id)
		}
	}
	n := len(c.acked)
	wait := AckInterval - now.Sub(c.lastAck)
	due := n > 0 && (n >= MaxAckBatch || wait <= 0)
	if n > 0 && !due && !c.ackTimer {
		c.armAcks(wait)
	}
	start := due && !c.ackBusy
	if start {
		c.ackBusy = true
		c.acks.Add(1)
	}
	c.mu.Unlock()
	if start {
		go c.writeAcks()
	}
	return nil
}

// writeAcks writes what is due, and again while more became due during
// the write; what is not due yet is left to the timer.
func (c *conn) writeAcks() {
	defer c.acks.Done()
	for {
		c.flushOrClose()
		c.mu.Lock()
		n := len(c.acked)
		wait := AckInterval - c.hub.o.Now().Sub(c.lastAck)
		again := n > 0 && (n >= MaxAckBatch || wait <= 0) && !c.closing
		if !again {
			c.ackBusy = false
			if n > 0 && !c.ackTimer && !c.stopped {
				c.armAcks(max(wait, 0))
			}
		}
		c.mu.Unlock()
		if !again {
			return
		}
	}
}

// armAcks schedules flushLater after wait; c.mu is held and no write is
// scheduled (ackTimer is false). The stream's one timer for it is re-armed
// rather than a timer made per acknowledgement write.
func (c *conn) armAcks(wait time.Duration) {
	c.ackTimer = true
	if c.ackT == nil {
		c.ackT = time.AfterFunc(wait, c.flushLater)
	} else {
		c.ackT.Reset(wait)
	}
}

func (c *conn) flushLater() {
	c.mu.Lock()
	c.ackTimer = false
	c.mu.Unlock()
	c.flushOrClose()
}

// flushOrClose writes the waiting acknowledgements. They were taken while
// the stream was open, so a close meanwhile does not cancel the write.
func (c *conn) flushOrClose() {
	ctx, cancel := context.WithTimeout(context.Background(), c.hub.o.WriteTimeout)
	defer cancel()
	if err := c.flushAcks(ctx); err != nil {
		c.hub.o.Logger.Warn("mailbox: acknowledgements", "device", c.device, "err", err)
		c.close(websocket.StatusInternalError, "")
	}
}

// flushAcks deletes the acknowledged envelopes waiting in acked.
func (c *conn) flushAcks(ctx context.Context) error {
	c.ackMu.Lock()
	defer c.ackMu.Unlock()
	c.mu.Lock()
	ids := c.acked
	c.acked = nil
	c.lastAck = c.hub.o.Now()
	c.mu.Unlock()
	for rest := ids; len(rest) > 0; {
		part := rest[:min(len(rest), MaxAckBatch)]
		rest = rest[len(part):]
		c.hub.ackWrites.Add(1)
		if _, err := c.hub.o.Store.Ack(ctx, c.device, part); err != nil {
			return err
		}
	}
	if len(ids) == 0 {
		return nil
	}
	c.forget(ids, true)
	// Acknowledgements are the device's, not the stream's: the envelopes
	// are gone from the mailbox, so the device's other streams on this
	// node no longer hold them in flight either. Only ids a sibling sent
	// and still waits for are dropped from its window, so an ack frees at
	// most one place per envelope actually deleted, never more.
	for _, s := range c.hub.streams(c.device) {
		if s != c {
			s.forget(ids, false)
		}
	}
	return nil
}

// forget drops deleted envelopes from the stream's in-flight window: all
// of ids if own (this stream wrote their deletion), else only those still
// waiting for this stream's device to acknowledge them (an id whose
// deletion this stream has queued itself stays until its own write).
func (c *conn) forget(ids []string, own bool) {
	c.mu.Lock()
	for _, id := range ids {
		if acked, sent := c.inflight[id]; sent && (own || !acked) {
			delete(c.inflight, id)
		}
	}
	// Only a pump held back by the in-flight limit needs telling that
	// there is room again; it reads what waited meanwhile.
	held := c.held && len(c.inflight) < MaxInFlight
	if held {
		c.held, c.fetch = false, true
	}
	c.mu.Unlock()
	if held {
		c.signal()
	}
}
