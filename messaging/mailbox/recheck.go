package mailbox

import (
	"context"
	"errors"
	"time"
)

// Every stream rechecks its session every SessionRecheck, in case the
// word of its end was lost on the bus. Asked one by one that is a query
// per stream every two minutes: 417 a second for 50,000 streams, 1,667
// for 200,000, nearly all of them answering "still live". With
// HubOptions.CheckSessions set, the node gathers the streams whose
// recheck fell due within recheckDelay and asks for their sessions
// together, up to maxSessionChecks at a time. The check when a stream is
// registered stays one by one: it is on the stream's way in.

const (
	// recheckDelay is how long due rechecks are gathered: a session end
	// lost on the bus closes its streams at most SessionRecheck plus
	// this late.
	recheckDelay = time.Second
	// maxSessionChecks is the most sessions one CheckSessions call gets.
	maxSessionChecks = 1000
)

var errWrongResults = errors.New("mailbox: CheckSessions gave a result count other than the sessions'")

// recheckStream queues c for the next gathered session check.
func (h *Hub) recheckStream(c *conn) { h.rechecks.add(c, recheckDelay, h.recheckSessions) }

// recheckSessions checks the queued streams' sessions and closes the
// streams whose session has ended or whose device is revoked. A part that
// cannot be checked is logged; its streams stay and are checked again at
// their next recheck, as a failed single check leaves them.
func (h *Hub) recheckSessions() {
	cs := h.rechecks.take()
	for len(cs) > 0 {
		part := cs[:min(len(cs), maxSessionChecks)]
		cs = cs[len(part):]
		ss := make([]Session, len(part))
		for i, c := range part {
			ss[i] = c.sess
		}
		ctx, cancel := context.WithTimeout(context.Background(), h.o.WriteTimeout)
		results, err := h.o.CheckSessions(ctx, ss)
		cancel()
		h.sessionChecks.Add(1)
		if err == nil && len(results) != len(part) {
			err = errWrongResults
		}
		if err != nil {
			h.o.Logger.Warn("mailbox: sessions not rechecked; the streams stay and are checked again later", "streams", len(part), "err", err)
			continue
		}
		for i, c := range part {
			if _, err := c.sessionChecked(results[i]); err != nil {
				h.o.Logger.Warn("mailbox: session check", "device", c.device, "err", err)
			}
		}
	}
}
