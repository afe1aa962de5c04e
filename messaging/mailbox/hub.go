package mailbox

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/kanal-server/kanal/internal/bus"
	"github.com/kanal-server/kanal/internal/web"
)

// Close codes a device may see, besides the standard ones (1001 when the
// server shuts down, 1007 for a frame that is not JSON, 1008 for a frame
// that breaks the protocol, 1009 for a frame that is too large).
const (
	StatusReplaced websocket.StatusCode = 4000 // the device connected again elsewhere
	StatusRevoked  websocket.StatusCode = 4001 // the device was revoked
	StatusTooSlow  websocket.StatusCode = 4008 // the socket did not take frames in time
)

// FrameHandler handles a frame type the hub does not know itself, such as a
// send. Its reply, if not nil, is written back to the device; an error that
// is a *web.Problem is sent as a problem frame, any other closes the socket.
type FrameHandler func(ctx context.Context, device string, typ string, raw json.RawMessage) (reply any, err error)

// HubOptions configures a Hub.
type HubOptions struct {
	Store   *Store
	Bus     *bus.Bus
	Logger  *slog.Logger
	Tracker *web.Tracker // shutdown closes every socket through it
	// Device returns the authenticated device of a request; the identity
	// middleware in front of the stream route has already checked it.
	Device func(*http.Request) (string, bool)
	// Active, if set, is asked once more after the socket is registered:
	// a revocation that committed between the request's authentication and
	// the registration would otherwise miss the socket (Disconnect finds
	// nothing to close yet). Returning an error closes it as revoked.
	Active func(ctx context.Context, device string) error
	// Frames handles frame types other than "ack" (may be nil).
	Frames FrameHandler
	// OriginPatterns lists the web origins allowed to open a stream from a
	// browser (see websocket.AcceptOptions); empty allows same-origin only.
	OriginPatterns []string
	// WriteTimeout overrides the package's WriteTimeout (zero: default).
	WriteTimeout time.Duration
}

// Hub holds this node's device connections.
type Hub struct {
	o     HubOptions
	mu    sync.Mutex
	conns map[string]*conn

	carried, read atomic.Uint64 // envelopes written from wake-ups, from mailbox reads

	// Every connection subscribes to its device's wake-up subject, so
	// NATS sends a node only the wake-ups of its own devices; all those
	// subscriptions deliver into this one channel, read by one goroutine
	// (dispatch), rather than each running a goroutine of its own.
	wakes     chan *bus.Msg
	stop      chan struct{}
	stopOnce  sync.Once
	revokeSub *bus.Subscription
}

// NewHub returns a Hub and subscribes to the bus subjects that let other
// nodes disconnect a device (on revocation). Close stops it.
func NewHub(o HubOptions) (*Hub, error) {
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = WriteTimeout
	}
	h := &Hub{o: o, conns: map[string]*conn{}, wakes: make(chan *bus.Msg, wakeBuffer), stop: make(chan struct{})}
	sub, err := o.Bus.Subscribe(subjectDisconnect+"*", func(m *bus.Msg) {
		dev := m.Subject[len(subjectDisconnect):]
		h.closeLocal(dev, StatusRevoked, "device revoked")
	})
	if err != nil {
		return nil, err
	}
	h.revokeSub = sub
	go h.dispatch()
	return h, nil
}

// HubStats counts the envelopes this node's streams wrote, by where they
// came from.
type HubStats struct {
	Carried uint64 // carried by the wake-up, written without a mailbox read
	Read    uint64 // read from the mailbox: backlog, gaps, large envelopes
}

// Stats returns the counters since the hub started.
func (h *Hub) Stats() HubStats { return HubStats{Carried: h.carried.Load(), Read: h.read.Load()} }

// Close stops the hub's wake-up dispatch and its revocation subscription.
// Connections are closed through the Tracker, not here.
func (h *Hub) Close() {
	h.stopOnce.Do(func() {
		close(h.stop)
		_ = h.revokeSub.Unsubscribe()
	})
}

// dispatch hands each wake-up to the device's connection on this node. A
// wake-up for a device that has just disconnected finds none and is
// dropped: the envelope waits in the mailbox.
func (h *Hub) dispatch() {
	for {
		select {
		case <-h.stop:
			return
		case m := <-h.wakes:
			dev := strings.TrimPrefix(m.Subject, subjectWake)
			h.mu.Lock()
			c := h.conns[dev]
			h.mu.Unlock()
			if c != nil {
				c.offer(m.Data)
			}
		}
	}
}

const (
	subjectWake       = "kanal.mbox.wake."
	subjectDisconnect = "kanal.mbox.disconnect."
)

// Notify wakes the recipient devices of envelopes that have just been
// committed, wherever their sockets are.
func (h *Hub) Notify(devices ...string) {
	for _, d := range devices {
		if err := h.o.Bus.Publish(subjectWake+d, nil); err != nil {
			// Not fatal: the envelope is durable, the device gets it on the
			// next wake-up or reconnect.
			h.o.Logger.Warn("mailbox: wake-up not published", "device", d, "err", err)
		}
	}
}

// Deliver wakes the recipient devices of envelopes that have just been
// committed, as Notify does, and carries the envelopes in the wake-up
// when they are small: the node that holds a recipient's socket then
// writes them without reading them back from the mailbox. envs must carry
// the ids and sequence numbers the append assigned.
func (h *Hub) Deliver(envs []Envelope) {
	byDevice := map[string][]Envelope{}
	var order []string
	for _, e := range envs {
		if _, ok := byDevice[e.Recipient]; !ok {
			order = append(order, e.Recipient)
		}
		byDevice[e.Recipient] = append(byDevice[e.Recipient], e)
	}
	for _, d := range order {
		es := byDevice[d]
		var data []byte
		size := 0
		for _, e := range es {
			size += len(e.Ciphertext)
		}
		if size <= maxCarried {
			data, _ = json.Marshal(es) // a failure leaves a plain wake-up
		}
		if err := h.o.Bus.Publish(subjectWake+d, data); err != nil {
			h.o.Logger.Warn("mailbox: wake-up not published", "device", d, "err", err)
		}
	}
}

// Disconnect closes the device's socket on whichever node holds it.
func (h *Hub) Disconnect(device string) error {
	return h.o.Bus.Publish(subjectDisconnect+device, nil)
}

// Connected reports whether device has a socket on this node.
func (h *Hub) Connected(device string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.conns[device]
	return ok
}

func (h *Hub) closeLocal(device string, code websocket.StatusCode, reason string) {
	h.mu.Lock()
	c := h.conns[device]
	h.mu.Unlock()
	if c != nil {
		c.close(code, reason)
	}
}

// ServeHTTP upgrades an authenticated request to the device's stream.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	device, ok := h.o.Device(r)
	if !ok || !ValidDeviceID(device) {
		web.WriteProblem(w, r, web.Errorf(http.StatusUnauthorized, web.TypeUnauthorized, "Unauthorized", "a device session is required"))
		return
	}
	// The server's read and write timeouts are meant for requests; a
	// stream lives for hours and has its own per-write deadline and pings.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: h.o.OriginPatterns})
	if err != nil {
		return // Accept has written the error response
	}
	ws.SetReadLimit(MaxFrame)
	// The request context ends when the handler returns; the stream lives
	// on its own context, cancelled by close. It keeps none of the
	// request's values: the device is all a stream needs.
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{hub: h, device: device, ws: ws, wake: make(chan struct{}, 1), ctx: ctx, cancel: cancel,
		inflight: map[string]struct{}{}, done: make(chan struct{})}
	untrack, ok := h.o.Tracker.Track(func() { c.close(websocket.StatusGoingAway, "server shutting down"); <-c.done })
	if !ok {
		ws.Close(websocket.StatusGoingAway, "server shutting down")
		cancel()
		return
	}
	h.register(c)
	// The handler returns and net/http lets go of the hijacked connection,
	// its request and the deep stack that served the upgrade; the stream
	// runs on a fresh goroutine whose stack is only as deep as the pump.
	// An idle stream is two goroutines: this one and its reader.
	go func() {
		defer untrack()
		defer h.unregister(c)
		c.run()
	}()
}

func (h *Hub) register(c *conn) {
	h.mu.Lock()
	old := h.conns[c.device]
	h.conns[c.device] = c
	h.mu.Unlock()
	if old != nil {
		old.close(StatusReplaced, "replaced by a newer connection")
	}
}

func (h *Hub) unregister(c *conn) {
	h.mu.Lock()
	if h.conns[c.device] == c {
		delete(h.conns, c.device)
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

// conn is one device's socket. One goroutine writes (the pump), one reads.
type conn struct {
	hub    *Hub
	device string
	ws     *websocket.Conn
	wake   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc

	writeMu sync.Mutex // the pump and frame replies both write

	mu       sync.Mutex
	inflight map[string]struct{}
	cursor   int64    // last seq sent on this connection
	carried  [][]byte // envelopes carried by wake-ups since the pump last looked
	fetch    bool     // a wake-up came without envelopes: read the mailbox
	held     bool     // the pump waits for acks: MaxInFlight are unacknowledged
	closing  bool
	closeErr struct {
		code   websocket.StatusCode
		reason string
	}
	done chan struct{} // closed when run returns
}

// offer takes a wake-up: the envelopes it carries (JSON), or nil for a
// plain one, which makes the pump read the mailbox.
func (c *conn) offer(data []byte) {
	c.mu.Lock()
	if len(data) == 0 || len(c.carried) >= maxCarriedWakes {
		c.fetch = true
		c.carried = nil
	} else if !c.fetch {
		c.carried = append(c.carried, data)
	}
	c.mu.Unlock()
	c.signal()
}

// nextCarried returns the carried envelopes that follow after in sequence
// order, ok when they are the whole of what comes next: they start at
// after+1 with no gap and fit in room. Anything else — a gap left by a
// wake-up still on its way or lost, a payload that does not decode, too
// many, an envelope for another device — is not ok, and the pump reads
// the mailbox instead.
func nextCarried(device string, carried [][]byte, after int64, room int) (next []Envelope, ok bool) {
	for _, data := range carried {
		var es []Envelope
		if err := json.Unmarshal(data, &es); err != nil {
			return nil, false
		}
		for _, e := range es {
			if e.Recipient != device {
				return nil, false
			}
			if e.Seq > after {
				next = append(next, e)
			}
		}
	}
	slices.SortFunc(next, func(a, b Envelope) int { return cmp.Compare(a.Seq, b.Seq) })
	next = slices.CompactFunc(next, func(a, b Envelope) bool { return a.Seq == b.Seq })
	if len(next) > room {
		return nil, false
	}
	for i, e := range next {
		if e.Seq != after+1+int64(i) {
			return nil, false
		}
	}
	return next, true
}

func (c *conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default: // a wake-up is already pending; one read serves both
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

func (c *conn) run() {
	defer close(c.done)
	log := c.hub.o.Logger.With("device", c.device)

	// Subscribe before the first read of the mailbox, so an envelope
	// committed in between is not missed: it either shows in the read or
	// wakes us afterwards.
	sub, err := c.hub.o.Bus.ChanSubscribe(subjectWake+c.device, c.hub.wakes)
	if err != nil {
		log.Warn("mailbox: subscribe", "err", err)
		c.ws.Close(websocket.StatusInternalError, "try again")
		return
	}
	defer sub.Unsubscribe()

	if active := c.hub.o.Active; active != nil {
		if err := active(c.ctx, c.device); err != nil {
			c.ws.Close(StatusRevoked, "device revoked")
			return
		}
	}

	go c.readLoop()
	err = c.pump()

	c.mu.Lock()
	code, reason := c.closeErr.code, c.closeErr.reason
	c.mu.Unlock()
	switch {
	case code != 0:
	case errors.Is(err, context.DeadlineExceeded):
		code, reason = StatusTooSlow, "socket stalled"
	default:
		code, reason = websocket.StatusInternalError, "stream error"
	}
	if code == StatusTooSlow || code == websocket.StatusInternalError {
		// A stalled peer will not complete a closing handshake either.
		c.ws.CloseNow()
	} else {
		c.ws.Close(code, reason)
	}
	log.Debug("mailbox: stream closed", "code", int(code), "reason", reason)
}

// pump sends the mailbox: backlog first, then whatever each wake-up brings,
// never more than MaxInFlight unacknowledged envelopes.
func (c *conn) pump() error {
	store := c.hub.o.Store
	synced := false
	ping := time.NewTicker(PingInterval)
	defer ping.Stop()
	for {
		c.mu.Lock()
		room := MaxInFlight - len(c.inflight)
		c.held = room <= 0
		after := c.cursor
		carried, fetch := c.carried, c.fetch
		c.carried, c.fetch = nil, false
		c.mu.Unlock()
		var batch []Envelope
		fetched := false
		if room > 0 {
			ok := false
			// Once the backlog is through, a wake-up that carries the
			// next envelopes saves reading them back.
			if synced && !fetch && len(carried) > 0 {
				batch, ok = nextCarried(c.device, carried, after, room)
			}
			if !ok {
				var err error
				batch, err = store.Fetch(c.ctx, c.device, after, min(room, FetchBatch))
				if err != nil {
					if c.ctx.Err() != nil {
						return nil
					}
					return err
				}
				fetched = true
				c.hub.read.Add(uint64(len(batch)))
			} else {
				c.hub.carried.Add(uint64(len(batch)))
			}
		}
		if len(batch) > 0 {
			c.mu.Lock()
			for _, e := range batch {
				c.inflight[e.ID] = struct{}{}
			}
			c.cursor = batch[len(batch)-1].Seq
			c.mu.Unlock()
			for _, part := range splitBySize(batch, MaxFrameBytes) {
				if err := c.write(envelopesFrame{Type: "envelopes", Envelopes: part}); err != nil {
					return err
				}
			}
			if fetched && len(batch) == min(room, FetchBatch) {
				continue // there may be more right now
			}
		}
		if !synced && room > 0 {
			synced = true
			if err := c.write(typeFrame{Type: "synced"}); err != nil {
				return err
			}
		}
		select {
		case <-c.ctx.Done():
			return nil
		case <-c.wake:
		case <-ping.C:
			pctx, cancel := context.WithTimeout(context.Background(), c.hub.o.WriteTimeout)
			err := c.ws.Ping(pctx)
			cancel()
			if err != nil {
				if c.ctx.Err() != nil {
					return nil
				}
				return context.DeadlineExceeded
			}
		}
	}
}

func (c *conn) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.ctx.Err() != nil {
		return nil // closing; run sends the close frame
	}
	// The write has its own deadline rather than the connection's context:
	// cancelling a context mid-write makes the library drop the connection
	// without a close frame, and a close must still be able to say why.
	ctx, cancel := context.WithTimeout(context.Background(), c.hub.o.WriteTimeout)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, b); err != nil {
		if ctx.Err() != nil {
			return context.DeadlineExceeded
		}
		if c.ctx.Err() != nil {
			return nil
		}
		return err
	}
	return nil
}

func (c *conn) readLoop() {
	for {
		// Read ends when the socket closes; it is not tied to c.ctx for the
		// same reason as write.
		typ, data, err := c.ws.Read(context.Background())
		if err != nil {
			if errors.Is(err, websocket.ErrMessageTooBig) {
				c.close(websocket.StatusMessageTooBig, "frame too large")
				return
			}
			c.close(websocket.StatusNormalClosure, "")
			return
		}
		if typ != websocket.MessageText {
			c.close(websocket.StatusUnsupportedData, "text frames only")
			return
		}
		var head struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(data, &head); err != nil {
			c.close(websocket.StatusInvalidFramePayloadData, "frame is not JSON")
			return
		}
		if err := c.handle(head.Type, data); err != nil {
			var p *web.Problem
			if errors.As(err, &p) {
				if werr := c.write(problemFrame{Type: "problem", Problem: p}); werr != nil {
					c.close(websocket.StatusInternalError, "")
					return
				}
				continue
			}
			c.close(websocket.StatusPolicyViolation, err.Error())
			return
		}
	}
}

var errUnknownFrame = errors.New("unknown frame type")

func (c *conn) handle(typ string, data []byte) error {
	switch typ {
	case "ack":
		var f struct {
			Type string   `json:"type"`
			IDs  []string `json:"ids"`
		}
		if err := web.DecodeStrict(data, &f, MaxFrame); err != nil {
			return err
		}
		if _, err := c.hub.o.Store.Ack(c.ctx, c.device, f.IDs); err != nil {
			if errors.Is(err, ErrInvalid) {
				return web.Errorf(http.StatusBadRequest, web.TypeValidation, "Invalid ack", "%v", err)
			}
			return err
		}
		c.mu.Lock()
		for _, id := range f.IDs {
			delete(c.inflight, id)
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
		return nil
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
