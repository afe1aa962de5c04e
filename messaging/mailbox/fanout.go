package mailbox

import (
	"encoding/json"

	"github.com/kanal-server/kanal/internal/bus"
	"github.com/kanal-server/kanal/internal/web"
)

// A broadcast reaches tens of thousands of devices at once. One wake-up
// per device would be that many NATS messages, each delivered to the one
// node holding the device's streams; instead the body and the list of
// (device, seq) go out once, in chunks of maxFanoutDevices, on one subject
// every node subscribes to, and each node writes the envelope to the
// streams of the listed devices it holds. Like a carried wake-up it is
// sealed with the bus key (busauth.go): a fan-out whose tag does not
// verify is dropped, and the devices read their mailboxes at the next
// ping. Losing one delays delivery, never loses it: the references are in
// the mailboxes before it is published.

const (
	subjectFanout = "kanal.mbox.fanout"
	purposeFanout = "kanal mailbox fan-out v1"

	// maxFanoutDevices keeps one fan-out message near 200 KB, well under
	// NATS's default 1 MB payload limit.
	maxFanoutDevices = 4096
	// maxFanoutMessage caps what a node decodes.
	maxFanoutMessage = 1 << 20
)

// fanoutMessage is the payload of a fan-out: the envelope without its
// recipient and seq (its ciphertext only when at most maxCarried bytes),
// and the devices it was stored for with each one's seq.
type fanoutMessage struct {
	Envelope Envelope    `json:"envelope"`
	Devices  []deviceSeq `json:"devices"`
}

type deviceSeq struct {
	Device string `json:"d"`
	Seq    int64  `json:"s"`
}

// Fanout wakes the streams of the devices refs were stored for (by
// AppendSharedTx, committed) wherever they are, carrying body — the
// shared envelope's ciphertext — when it is small enough.
func (h *Hub) Fanout(refs []Envelope, body []byte) {
	if len(refs) == 0 {
		return
	}
	e := refs[0]
	e.Recipient, e.Seq, e.Ciphertext = "", 0, nil
	if len(body) <= maxCarried {
		e.Ciphertext = body
	}
	for len(refs) > 0 {
		part := refs[:min(len(refs), maxFanoutDevices)]
		refs = refs[len(part):]
		m := fanoutMessage{Envelope: e, Devices: make([]deviceSeq, len(part))}
		for i, r := range part {
			m.Devices[i] = deviceSeq{Device: r.Recipient, Seq: r.Seq}
		}
		b, err := json.Marshal(m)
		if err != nil {
			h.o.Logger.Warn("mailbox: fan-out not published", "err", err)
			return
		}
		if err := h.o.Bus.Publish(subjectFanout, sealBus(h.o.BusKey, purposeFanout, subjectFanout, b)); err != nil {
			// Not fatal: the references are durable; the devices read
			// them at their next ping or connection.
			h.o.Logger.Warn("mailbox: fan-out not published", "devices", len(part), "err", err)
		}
	}
}

// takeFanout offers a genuine fan-out's envelope to the streams of its
// devices on this node.
func (h *Hub) takeFanout(m *bus.Msg) {
	payload, ok := openBus(h.o.BusKey, purposeFanout, m.Subject, m.Data)
	if !ok {
		h.forged.Add(1)
		h.o.Logger.Warn("mailbox: fan-out with a bad tag ignored")
		return
	}
	var f fanoutMessage
	if err := web.DecodeStrict(payload, &f, maxFanoutMessage); err != nil {
		h.o.Logger.Warn("mailbox: malformed fan-out ignored", "err", err)
		return
	}
	for _, d := range f.Devices {
		cs := h.streams(d.Device)
		if len(cs) == 0 {
			continue
		}
		h.wakeUps.Add(1)
		var w *carriedWake // nil: a plain wake-up
		if len(f.Envelope.Ciphertext) > 0 {
			e := f.Envelope
			e.Recipient, e.Seq = d.Device, d.Seq
			w = &carriedWake{envs: []Envelope{e}}
		}
		for _, c := range cs {
			c.offer(w)
		}
	}
}
