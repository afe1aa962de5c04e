package mailbox

import (
	"fmt"

	"github.com/kanal-server/kanal/internal/binframe"
	"github.com/kanal-server/kanal/internal/bus"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/messaging/mailbox/wire"
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
//
// Every node reads every fan-out, and holds a share of its devices. The
// payload is binary (docs/api-messaging.md, "Storage and delivery"):
// the envelope once as a kanal.bin.v1 envelopes frame, then the devices
// with their seqs. A node checks the whole payload without copying a
// device's name, and looks each name up in its streams as the bytes it
// is: only the devices it holds cost an allocation. The JSON payload of
// earlier versions (first byte '{') is still read, for a rolling upgrade.

const (
	subjectFanout = "kanal.mbox.fanout"
	purposeFanout = "kanal mailbox fan-out v1"

	// fanoutBinary is the first byte of a binary fan-out payload.
	fanoutBinary byte = 0xa0

	// maxFanoutDevices keeps one fan-out message near 200 KB in the JSON
	// of earlier versions (about 100 KB in the binary form), well under
	// NATS's default 1 MB payload limit.
	maxFanoutDevices = 4096
	// maxFanoutMessage caps what a node decodes.
	maxFanoutMessage = 1 << 20
	// minFanoutDevice is the fewest bytes a (device, seq) pair takes.
	minFanoutDevice = 1 + 8
)

// appendFanout appends the binary payload of a fan-out of e (its
// recipient empty, its seq 0, its ciphertext the body or empty) to
// devices: 0xa0, e as an envelopes frame of one (bytes), then a u16
// count (1..maxFanoutDevices) and that many (str device, i64 seq).
func appendFanout(b []byte, e Envelope, devices []Envelope) ([]byte, error) {
	if len(devices) == 0 || len(devices) > maxFanoutDevices {
		return b, fmt.Errorf("mailbox: a fan-out names 1..%d devices, not %d", maxFanoutDevices, len(devices))
	}
	frame, err := wire.AppendEnvelopes(nil, []Envelope{e})
	if err != nil {
		return b, err
	}
	b = append(b, fanoutBinary)
	b = binframe.AppendBytes(b, frame)
	b = binframe.AppendU16(b, uint16(len(devices)))
	for i := range devices {
		if err := binframe.CheckString("device", devices[i].Recipient); err != nil {
			return b, err
		}
		b = binframe.AppendString(b, devices[i].Recipient)
		b = binframe.AppendI64(b, devices[i].Seq)
	}
	return b, nil
}

// fanoutDevice is a device named in a fan-out; name aliases the payload.
type fanoutDevice struct {
	name []byte
	seq  int64
}

// decodeFanout decodes a binary fan-out payload strictly: the envelope
// with an id, an empty recipient and seq 0; 1..maxFanoutDevices devices,
// each with a name and a seq of at least 1; nothing after the last. The
// envelope's ciphertext and the names alias payload.
func decodeFanout(payload []byte) (Envelope, []fanoutDevice, error) {
	fail := func(format string, a ...any) (Envelope, []fanoutDevice, error) {
		return Envelope{}, nil, fmt.Errorf("%w: fan-out: "+format, append([]any{binframe.ErrMalformed}, a...)...)
	}
	if len(payload) > maxFanoutMessage {
		return fail("%d bytes, at most %d", len(payload), maxFanoutMessage)
	}
	r := binframe.NewReader(payload)
	if t := r.U8("type"); r.Err() == nil && t != fanoutBinary {
		return fail("type 0x%02x", t)
	}
	frame := r.Bytes("envelope", maxFanoutMessage)
	n := r.Count("devices", minFanoutDevice)
	if r.Err() != nil {
		return Envelope{}, nil, r.Err()
	}
	if n == 0 || n > maxFanoutDevices {
		return fail("%d devices, 1..%d", n, maxFanoutDevices)
	}
	devices := make([]fanoutDevice, n)
	for i := range devices {
		devices[i] = fanoutDevice{name: r.StringBytes("device"), seq: r.I64("seq")}
		if r.Err() == nil && (len(devices[i].name) == 0 || devices[i].seq < 1) {
			return fail("device %d without a name or a seq", i)
		}
	}
	if err := r.Done(); err != nil {
		return Envelope{}, nil, err
	}
	envs, err := wire.DecodeEnvelopes(frame)
	if err != nil {
		return Envelope{}, nil, err
	}
	e := envs[0]
	if len(envs) != 1 || e.ID == "" || e.Recipient != "" || e.Seq != 0 || len(e.Ciphertext) > maxCarried {
		return fail("the envelope must be one, with an id, no recipient, no seq and at most %d bytes of ciphertext", maxCarried)
	}
	return e, devices, nil
}

// fanoutJSON is the payload of a fan-out from a node of an earlier
// version.
type fanoutJSON struct {
	Envelope Envelope `json:"envelope"`
	Devices  []struct {
		Device string `json:"d"`
		Seq    int64  `json:"s"`
	} `json:"devices"`
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
	// An external bus does not echo: this node's own devices get the
	// fan-out from here, once every part is on its way to the others.
	var own [][]byte
	for len(refs) > 0 {
		part := refs[:min(len(refs), maxFanoutDevices)]
		refs = refs[len(part):]
		b, err := appendFanout(nil, e, part)
		if err != nil {
			h.o.Logger.Warn("mailbox: fan-out not published", "err", err)
			break
		}
		if err := h.o.Bus.Publish(subjectFanout, sealBus(h.o.BusKey, purposeFanout, subjectFanout, b)); err != nil {
			// Not fatal: the references are durable; the devices read
			// them at their next ping or connection.
			h.o.Logger.Warn("mailbox: fan-out not published", "devices", len(part), "err", err)
		}
		if !h.o.Bus.Echoes() {
			own = append(own, b)
		}
	}
	for _, b := range own {
		h.offerFanout(b)
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
	h.offerFanout(payload)
}

// offerFanout offers the envelope of a fan-out's payload, genuine, to the
// streams of its devices on this node.
func (h *Hub) offerFanout(payload []byte) {
	var e Envelope
	var devices []fanoutDevice
	var err error
	if len(payload) > 0 && payload[0] == '{' {
		e, devices, err = decodeFanoutJSON(payload)
	} else {
		e, devices, err = decodeFanout(payload)
	}
	if err != nil {
		h.undecodable.Add(1)
		h.o.Logger.Warn("mailbox: malformed fan-out ignored", "err", err)
		return
	}
	// One pass under the lock finds the devices held here and their
	// streams; the streams are offered the envelope after it. The lookups
	// take the names as the payload's bytes: the devices of other nodes
	// cost nothing more.
	type held struct {
		from, to int // the device's streams in conns
		seq      int64
	}
	var mine []held
	var conns []*conn
	h.mu.Lock()
	for _, d := range devices {
		if cs := h.conns[string(d.name)]; len(cs) > 0 {
			mine = append(mine, held{len(conns), len(conns) + len(cs), d.seq})
			conns = append(conns, cs...)
		}
	}
	h.mu.Unlock()
	if len(mine) == 0 {
		return
	}
	// The wake-ups the streams are offered, made together: the streams
	// only read them.
	var wakes []carriedWake
	var envs []Envelope
	if len(e.Ciphertext) > 0 {
		wakes, envs = make([]carriedWake, len(mine)), make([]Envelope, len(mine))
	}
	h.wakeUps.Add(uint64(len(mine)))
	for i, d := range mine {
		var w *carriedWake // nil: a plain wake-up
		if wakes != nil {
			envs[i] = e
			envs[i].Recipient, envs[i].Seq = conns[d.from].device, d.seq
			wakes[i].envs = envs[i : i+1 : i+1]
			w = &wakes[i]
		}
		for _, c := range conns[d.from:d.to] {
			c.offer(w)
		}
	}
}

// decodeFanoutJSON decodes the JSON payload of an earlier version's
// fan-out strictly, into what decodeFanout returns.
func decodeFanoutJSON(payload []byte) (Envelope, []fanoutDevice, error) {
	var f fanoutJSON
	if err := web.DecodeStrict(payload, &f, maxFanoutMessage); err != nil {
		return Envelope{}, nil, err
	}
	devices := make([]fanoutDevice, len(f.Devices))
	for i, d := range f.Devices {
		devices[i] = fanoutDevice{name: []byte(d.Device), seq: d.Seq}
	}
	return f.Envelope, devices, nil
}
