package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"time"

	"github.com/nats-io/nats.go"
)

// natsDirect runs the direct workload on raw NATS core pub/sub: one
// connection per device, each subscribed to its own subject; a send is a
// publish of the same plaintext size to the peer's subject. This is the
// floor of one broker hop: no authentication of devices, no encryption, no
// storage, and a message to a disconnected device is lost.
func (r *runner) natsDirect(ctx context.Context) error {
	addr := r.o.peerURL
	if addr == "" {
		addr = "nats://127.0.0.1:4222"
	}
	n := r.o.devices
	conns := make([]*nats.Conn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	subject := func(i int) string { return fmt.Sprintf("kanalbench.%s.%d", r.runID, i) }
	err := parallel(ctx, n, 32, func(i int) error {
		c, err := nats.Connect(addr, nats.Name("kanal-bench"), nats.MaxReconnects(0),
			nats.SetCustomDialer(&net.Dialer{Timeout: 10 * time.Second, LocalAddr: r.net.sourceFor(i)}))
		if err != nil {
			return fmt.Errorf("nats: %w", err)
		}
		conns[i] = c
		_, err = c.Subscribe(subject(i), func(m *nats.Msg) {
			now := time.Now()
			if len(m.Data) < payloadHead || m.Data[0] != kindMeasured {
				return
			}
			if rec := r.rec.Load(); rec != nil {
				rec.Record(now, now.Sub(time.Unix(0, int64(binary.BigEndian.Uint64(m.Data[1:])))))
				r.delivered.Add(1)
				r.deliveredAt(now)
			}
		})
		if err != nil {
			return err
		}
		return c.Flush()
	})
	if err != nil {
		return err
	}
	var senders []sender
	for i := 0; i+1 < n; i += 2 {
		senders = append(senders, sender{d: &device{n: i}, recips: []string{subject(i + 1)}},
			sender{d: &device{n: i + 1}, recips: []string{subject(i)}})
	}
	r.publish = func(ctx context.Context, s sender, pt []byte) error {
		c := conns[s.d.n]
		if err := c.Publish(s.recips[0], pt); err != nil {
			return err
		}
		// A send completes when the server has it, as a kanal send
		// completes with the server's answer.
		return c.FlushTimeout(10 * time.Second)
	}
	return r.measure(ctx, senders)
}
