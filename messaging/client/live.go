package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"

	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/kind"
	mailbox "github.com/kanal-server/kanal/messaging/mailbox/wire"
)

// Listening that survives. A Stream ends with its connection: a server
// restart or deploy (1001), a dropped network (1006), a stall (4008). Listen
// returns a LiveStream, which opens a new stream after each of those, with
// backoff and jitter, and resumes from the mailbox: what was not
// acknowledged comes again as the new stream's backlog, and the LiveStream
// hands out nothing it has handed out before. It stops for good — and says
// why — when the device is revoked (4001) or the session has ended (4002,
// or 401 on connecting) and ListenOptions.Refresh cannot get a new one.

// Backoff of a LiveStream between two connection attempts: from
// MinReconnectDelay doubling to MaxReconnectDelay; each wait is drawn
// uniformly between half and the whole of the step, so that the devices a
// restart disconnected at once do not come back at once. A Retry-After
// the server sends is waited at least.
const (
	MinReconnectDelay = 250 * time.Millisecond
	MaxReconnectDelay = 30 * time.Second
)

// ListenOptions configures Client.Listen. All fields are optional.
type ListenOptions struct {
	// Refresh returns a new session token when the session has ended or
	// expired (close 4002, 401 on connecting); the LiveStream sets it and
	// connects again. An error from it stops the LiveStream with a
	// *StoppedError. nil: a session end stops it.
	Refresh func(ctx context.Context) (token string, err error)
	// OnChange is told when the connection goes and comes back; it runs on
	// the LiveStream's own goroutine and must not block.
	OnChange func(LiveChange)
	// MinDelay and MaxDelay override MinReconnectDelay and
	// MaxReconnectDelay (zero: the defaults).
	MinDelay, MaxDelay time.Duration
}

// LiveChange is a change of a LiveStream's connection.
type LiveChange struct {
	// Connected is true when a stream has opened, false when one was lost
	// (or could not be opened) and the next attempt waits Wait.
	Connected bool
	// Reconnected marks a stream opened after an earlier one was lost.
	Reconnected bool
	Wait        time.Duration
	Err         error // why the stream was lost or not opened
}

// StoppedError is why a LiveStream stopped for good: Reason is one
// sentence for the person using the device.
type StoppedError struct {
	Reason string
	Err    error
}

func (e *StoppedError) Error() string { return e.Reason }
func (e *StoppedError) Unwrap() error { return e.Err }

// ErrLiveClosed is returned by a LiveStream's methods after Close.
var ErrLiveClosed = errors.New("messaging/client: live stream closed")

// LiveStream is this device's stream, reopened whenever it is lost.
type LiveStream struct {
	c   *Client
	o   ListenOptions
	ctx context.Context
	end context.CancelFunc

	mu      sync.Mutex
	cur     *Stream       // the open stream, nil while reconnecting
	ready   chan struct{} // closed when cur is set or the LiveStream stops
	stopped error         // why it stopped: *StoppedError or ErrLiveClosed
	done    chan struct{} // closed when run returns

	handed    map[string]bool // envelope ids handed out
	handedLog []string        // the same, oldest first, at most maxSeen
}

// Listen opens the device's stream and keeps it open until ctx ends or
// Close is called. It returns at once; Receive waits for the connection.
func (c *Client) Listen(ctx context.Context, o ListenOptions) *LiveStream {
	if o.MinDelay <= 0 {
		o.MinDelay = MinReconnectDelay
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = MaxReconnectDelay
	}
	lctx, end := context.WithCancel(ctx)
	l := &LiveStream{c: c, o: o, ctx: lctx, end: end, ready: make(chan struct{}), done: make(chan struct{}), handed: map[string]bool{}}
	go l.run()
	return l
}

// Close closes the stream and stops reconnecting. Messages handed out
// since the last Receive are acknowledged first, if the stream is open.
func (l *LiveStream) Close() error {
	l.mu.Lock()
	cur := l.cur
	l.mu.Unlock()
	var err error
	if cur != nil {
		actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = cur.Ack(actx)
		cancel()
	}
	l.stop(ErrLiveClosed)
	<-l.done
	return err
}

// Err returns why the LiveStream stopped (a *StoppedError, or
// ErrLiveClosed), nil while it runs.
func (l *LiveStream) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stopped
}

func (l *LiveStream) stop(err error) {
	l.mu.Lock()
	if l.stopped == nil {
		l.stopped = err
		select {
		case <-l.ready:
		default:
			close(l.ready)
		}
	}
	l.mu.Unlock()
	l.end()
}

// current waits for an open stream other than old.
func (l *LiveStream) current(ctx context.Context, old *Stream) (*Stream, error) {
	for {
		l.mu.Lock()
		cur, ready, stopped := l.cur, l.ready, l.stopped
		l.mu.Unlock()
		switch {
		case stopped != nil:
			return nil, stopped
		case cur != nil && cur != old:
			return cur, nil
		case cur == nil:
			select {
			case <-ready:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		default:
			// old is gone, and run is about to notice.
			select {
			case <-time.After(10 * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
}

// Receive returns the next message, waiting across reconnects. A message
// is handed out once: one that comes again on a new stream (it was handed
// out and not yet acknowledged when the old one was lost) is acknowledged
// and skipped. A *ReceiveError is an envelope that could not be read;
// Receive can be called again after it. A *StoppedError means the
// LiveStream has stopped for good.
func (l *LiveStream) Receive(ctx context.Context) (*Incoming, error) {
	var st *Stream
	for {
		var err error
		if st, err = l.current(ctx, st); err != nil {
			return nil, err
		}
		for {
			in, err := st.Receive(ctx)
			var re *ReceiveError
			switch {
			case err == nil:
				if l.handOut(in.EnvelopeID) {
					return in, nil
				}
				// Handed out before: acknowledge it now, lest it wait
				// for a next message that may be long in coming.
				_ = st.Ack(ctx)
				continue
			case errors.As(err, &re):
				if l.handOut(re.EnvelopeID) {
					return nil, err
				}
				continue
			case ctx.Err() != nil:
				return nil, ctx.Err()
			}
			break // the stream is gone: wait for the next
		}
	}
}

// ReceiveBatch returns the messages that have arrived, up to max,
// waiting across reconnects for the first; it acknowledges nothing (see
// Stream.ReceiveBatch): keep them, then call Ack. As with Receive, a
// message is handed out once while the LiveStream runs: one that comes
// again on a new stream is skipped and acknowledged. bad holds a
// *ReceiveError for each envelope that could not be read.
func (l *LiveStream) ReceiveBatch(ctx context.Context, max int) (msgs []*Incoming, bad []error, err error) {
	var st *Stream
	for {
		if st, err = l.current(ctx, st); err != nil {
			return nil, nil, err
		}
		for {
			got, gotBad, err := st.ReceiveBatch(ctx, max)
			if err != nil {
				if ctx.Err() != nil {
					return nil, nil, ctx.Err()
				}
				if len(got) == 0 && len(gotBad) == 0 {
					break // the stream is gone: wait for the next
				}
			}
			msgs, bad = msgs[:0], bad[:0]
			for _, in := range got {
				if l.handOut(in.EnvelopeID) {
					msgs = append(msgs, in)
				}
			}
			for _, e := range gotBad {
				var re *ReceiveError
				if errors.As(e, &re) && l.handOut(re.EnvelopeID) {
					bad = append(bad, e)
				}
			}
			if len(msgs) > 0 || len(bad) > 0 {
				return msgs, bad, nil
			}
			// Everything was handed out before, on a stream since lost:
			// acknowledge it now, lest it wait for the next batch.
			_ = st.Ack(ctx)
		}
	}
}

// handOut records id as handed out; false if it was already.
func (l *LiveStream) handOut(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.handed[id] {
		return false
	}
	l.handed[id] = true
	l.handedLog = append(l.handedLog, id)
	if len(l.handedLog) > maxSeen {
		delete(l.handed, l.handedLog[0])
		l.handedLog = l.handedLog[1:]
	}
	return true
}

// Ack acknowledges the messages handed out so far on the open stream.
// Those handed out on a stream since lost come again, and are then
// acknowledged without being handed out.
func (l *LiveStream) Ack(ctx context.Context) error {
	l.mu.Lock()
	cur := l.cur
	l.mu.Unlock()
	if cur == nil {
		return nil
	}
	if err := cur.Ack(ctx); err != nil && !errors.Is(err, ErrClosed) {
		return err
	}
	return nil
}

// Send sends m over the open stream, or, while there is none, with
// Client.Send over HTTP.
func (l *LiveStream) Send(ctx context.Context, to Peer, m *kind.Message) (*messaging.SendResponse, error) {
	l.mu.Lock()
	cur := l.cur
	l.mu.Unlock()
	if cur != nil {
		resp, err := cur.Send(ctx, to, m)
		if !errors.Is(err, ErrClosed) {
			return resp, err
		}
		// Lost while sending: the message has a fixed id, so sending it
		// again over HTTP cannot show it twice to a receiver that keeps
		// message ids; the server took it at most once per send.
	}
	return l.c.Send(ctx, to, m)
}

// Receipt tells the sender's devices that in was delivered or read, if
// in wants one (WantsReceipt); else it does nothing.
func (l *LiveStream) Receipt(ctx context.Context, in *Incoming, status string) error {
	if !l.c.WantsReceipt(in) {
		return nil
	}
	m, err := kind.New(NewMessageID(), l.c.now(), &kind.ReceiptBody{Status: status, IDs: []string{in.Message.ID}})
	if err != nil {
		return err
	}
	_, err = l.Send(ctx, in.Reply, m)
	return err
}

// chatKinds are the kinds a person writes into a conversation: those get
// delivered and read receipts.
var chatKinds = map[kind.Kind]bool{
	kind.Text: true, kind.Attachment: true, kind.Poll: true, kind.SurveyInvite: true, kind.Offer: true,
	kind.Contract: true, kind.PaymentRequest: true, kind.FormRequest: true, kind.FormSubmission: true,
	kind.DocumentShare: true,
}

// WantsReceipt says whether in is a chat message from someone else, which
// a receipt answers. Server notices, receipts, status and control kinds
// (a payment's status, group and device changes, and any kind not written
// as a chat message, such as profile updates) get none, nor do messages
// from this account's own other devices.
func (c *Client) WantsReceipt(in *Incoming) bool {
	return !in.FromServer && !in.Announcement && in.Message != nil && chatKinds[in.Message.Kind] && in.SenderAccount != c.account
}

func (l *LiveStream) run() {
	defer close(l.done)
	defer l.end()
	step := l.o.MinDelay
	connectedBefore := false
	refreshed := false // a refresh since the last stream that stayed open
	for {
		st, err := l.c.Connect(l.ctx)
		if l.ctx.Err() != nil {
			if st != nil {
				st.Close()
			}
			l.stop(ErrLiveClosed)
			return
		}
		var wait time.Duration
		if err == nil {
			l.mu.Lock()
			if l.stopped != nil {
				l.mu.Unlock()
				st.Close()
				return
			}
			l.cur = st
			close(l.ready)
			l.mu.Unlock()
			l.change(LiveChange{Connected: true, Reconnected: connectedBefore})
			connectedBefore = true
			opened := time.Now()
			select {
			case <-st.done:
			case <-l.ctx.Done():
			}
			l.mu.Lock()
			l.cur = nil
			l.ready = make(chan struct{})
			if l.stopped != nil {
				close(l.ready)
			}
			l.mu.Unlock()
			if l.ctx.Err() != nil {
				st.ws.Close(websocket.StatusNormalClosure, "")
				<-st.done
				l.stop(ErrLiveClosed)
				return
			}
			err = st.Err()
			// A stream that stayed open a while resets the backoff: the
			// next loss starts again from the shortest wait.
			if time.Since(opened) > l.o.MaxDelay {
				step = l.o.MinDelay
				refreshed = false
			}
		}
		switch verdict, reason := classify(err); verdict {
		case liveStop:
			l.stop(&StoppedError{Reason: reason, Err: err})
			return
		case liveRefresh:
			if l.o.Refresh == nil || refreshed {
				l.stop(&StoppedError{Reason: reason, Err: err})
				return
			}
			tok, rerr := l.o.Refresh(l.ctx)
			if rerr != nil {
				if l.ctx.Err() != nil {
					l.stop(ErrLiveClosed)
					return
				}
				l.stop(&StoppedError{Reason: reason, Err: errors.Join(err, rerr)})
				return
			}
			l.c.SetToken(tok)
			refreshed = true
			continue // at once, with the new token
		}
		wait = step/2 + rand.N(step/2+1)
		if ra := retryAfter(err); ra > wait {
			wait = ra
		}
		step = min(step*2, l.o.MaxDelay)
		l.change(LiveChange{Wait: wait, Err: err})
		select {
		case <-time.After(wait):
		case <-l.ctx.Done():
			l.stop(ErrLiveClosed)
			return
		}
	}
}

func (l *LiveStream) change(c LiveChange) {
	if l.o.OnChange != nil {
		l.o.OnChange(c)
	}
}

type liveVerdict int

const (
	liveRetry   liveVerdict = iota // wait, then connect again
	liveRefresh                    // the session ended: refresh, or stop
	liveStop                       // stop for good
)

// classify says what a lost or refused stream means, and for one that
// stops the LiveStream, why in the user's words.
func classify(err error) (liveVerdict, string) {
	var p *idclient.Problem
	if errors.As(err, &p) {
		switch p.Status {
		case http.StatusUnauthorized:
			return liveRefresh, "Your session has ended; log in again to keep receiving messages."
		case http.StatusForbidden:
			return liveStop, "The server no longer lets this device receive messages (" + p.Detail + "). Log in again, or ask your administrator."
		case http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout, http.StatusInternalServerError:
			return liveRetry, ""
		}
		if p.Status >= 400 && p.Status < 500 {
			return liveStop, "The server refused to open the connection: " + p.Error()
		}
		return liveRetry, ""
	}
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		switch ce.Code {
		case mailbox.StatusRevoked:
			return liveStop, "This device has been revoked: it can no longer receive messages. Enrol it again to use it."
		case mailbox.StatusSessionEnded:
			return liveRefresh, sessionEndedReason(ce.Reason)
		case websocket.StatusPolicyViolation, websocket.StatusInvalidFramePayloadData, websocket.StatusMessageTooBig, websocket.StatusUnsupportedData:
			// The server found this client's frames wrong: connecting again
			// would only repeat it.
			return liveStop, "The server closed the connection because of a protocol error (" + ce.Reason + "); please update kanal."
		}
	}
	return liveRetry, ""
}

// sessionEndedReason turns the reason of a 4002 close into a sentence.
func sessionEndedReason(reason string) string {
	switch reason {
	case "logged out":
		return "You were logged out (on this or another of your devices); log in again to keep receiving messages."
	case "password changed":
		return "Your password was changed, which ended this session; log in again with the new password."
	case "device key changed":
		return "This device's key was renewed, which ended this session; log in again."
	case "refresh token reused":
		return "Your session was ended because its refresh token was used twice, which can mean it was stolen; log in again and check your devices."
	case "session expired":
		return "Your session expired and could not be renewed; log in again."
	}
	return "Your session has ended; log in again to keep receiving messages."
}

// retryAfter is the Retry-After of a refused connection, if it gave one.
func retryAfter(err error) time.Duration {
	var p *idclient.Problem
	if !errors.As(err, &p) || p.Extra == nil {
		return 0
	}
	raw, ok := p.Extra["retry_after"]
	if !ok {
		return 0
	}
	n, perr := strconv.Atoi(string(raw))
	if perr != nil || n <= 0 {
		return 0
	}
	return min(time.Duration(n)*time.Second, MaxReconnectDelay)
}

// String describes a change in a few words, for logs.
func (c LiveChange) String() string {
	if c.Connected {
		if c.Reconnected {
			return "reconnected"
		}
		return "connected"
	}
	return fmt.Sprintf("connection lost (%v); reconnecting in %v", c.Err, c.Wait.Round(time.Millisecond))
}
