// Package bus connects kanal nodes over NATS: an in-process NATS server for
// the embedded default (no network listener), or an external NATS cluster
// in production. The bus only wakes and fans out; the database is the
// truth, so a message lost on the bus delays delivery and never loses it.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Options configures Open. The zero value starts an embedded server.
type Options struct {
	// URL of an external NATS server or cluster (comma-separated seeds).
	// Empty starts an in-process server reachable only from this process.
	URL string
	// Name identifies this node's connection in NATS monitoring.
	Name   string
	Logger *slog.Logger

	// TLS and credentials for an external server (the embedded one needs
	// none: it has no listener). See Check for which go together.
	CAFile    string // PEM CA certificates the server's certificate must chain to; set: TLS required
	CertFile  string // PEM client certificate, for a server that verifies clients (with KeyFile)
	KeyFile   string
	User      string // user and password (or user:password@ in URL)
	Password  string
	NKeyFile  string // file holding an nkey user seed (SU…)
	CredsFile string // a .creds file: user JWT and nkey seed, for a server in operator (JWT) mode
}

// Bus is a NATS connection, and the embedded server when there is one.
type Bus struct {
	nc       *nats.Conn
	embedded *server.Server
	log      *slog.Logger

	// On the embedded bus: the channels LocalSubscribe registered, which
	// PublishLocal fills without NATS.
	localMu sync.RWMutex
	local   []*localSub
}

type localSub struct {
	prefix string
	ch     chan *Msg
}

// Msg is a message received from the bus.
type Msg = nats.Msg

// Subscription is an active subscription.
type Subscription = nats.Subscription

const (
	connectTimeout = 5 * time.Second
	drainTimeout   = 5 * time.Second
)

// Open connects to the bus described by o.
func Open(ctx context.Context, o Options) (*Bus, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Bus{log: log}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.Timeout(connectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "server", nc.ConnectedUrlRedacted()) }),
	}
	if o.URL == "" {
		if err := o.Check(); err != nil {
			return nil, err
		}
		ns, err := server.NewServer(&server.Options{
			DontListen: true,
			NoSigs:     true,
			NoLog:      true,
			ServerName: o.Name,
			MaxPayload: 4 << 20,
		})
		if err != nil {
			return nil, fmt.Errorf("start embedded NATS: %w", err)
		}
		ns.Start()
		if !ns.ReadyForConnections(connectTimeout) {
			ns.Shutdown()
			return nil, errors.New("start embedded NATS: not ready in time")
		}
		b.embedded = ns
		opts = append(opts, nats.InProcessServer(ns))
	} else {
		auth, err := o.external()
		if err != nil {
			return nil, err
		}
		opts = append(opts, auth...)
		// A node hands what it publishes to itself (see Echoes): the
		// server writes none of it back, and the node reads and checks
		// none of it again.
		opts = append(opts, nats.NoEcho())
	}
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		if b.embedded != nil {
			b.embedded.Shutdown()
		}
		return nil, connectError(o.URL, err)
	}
	// Confirm the server answers before we call ourselves connected.
	if err := nc.FlushTimeout(connectTimeout); err != nil {
		nc.Close()
		if b.embedded != nil {
			b.embedded.Shutdown()
		}
		return nil, connectError(o.URL, err)
	}
	if b.embedded == nil {
		if _, err := nc.TLSConnectionState(); err != nil {
			log.Warn("the connection to NATS is not encrypted: give the CA of the server's certificate and run the server with TLS required", "server", nc.ConnectedUrlRedacted())
		}
	}
	b.nc = nc
	return b, nil
}

// ValidateURL checks a NATS URL list without connecting.
func ValidateURL(raw string) error {
	for _, one := range splitURLs(raw) {
		u, err := url.Parse(one)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return fmt.Errorf("cannot parse NATS URL: %v", err)
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("unsupported NATS URL scheme %q (want nats:// or tls://)", u.Scheme)
		}
		if u.Host == "" {
			return errors.New("NATS URL names no host")
		}
	}
	return nil
}

func splitURLs(raw string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(raw); i++ {
		if i == len(raw) || raw[i] == ',' {
			if i > start {
				out = append(out, raw[start:i])
			}
			start = i + 1
		}
	}
	return out
}

func redact(raw string) string {
	if raw == "" {
		return "embedded server"
	}
	var out []string
	for _, one := range splitURLs(raw) {
		if u, err := url.Parse(one); err == nil {
			if _, hasPassword := u.User.Password(); u.User != nil && !hasPassword {
				// A lone user name in a NATS URL is a token: hide it too.
				u.User = url.User("xxxxx")
			}
			out = append(out, u.Redacted())
		}
	}
	return fmt.Sprint(out)
}

// Embedded reports whether the bus runs in this process.
func (b *Bus) Embedded() bool { return b.embedded != nil }

// Echoes reports whether a message published on this bus reaches this
// connection's own subscriptions. The embedded bus echoes: it has no
// listener, so the hubs of one process (tests run two nodes so) share its
// one connection and must hear each other. An external bus does not (NATS's
// no-echo): each node has a connection of its own, and what it publishes
// is for the other nodes; its own streams get it from the node directly
// (the mailbox hub does so), not from a copy the server writes back, which
// the node would have read, checked and dropped as its own. One node per
// connection, then, on an external bus.
func (b *Bus) Echoes() bool { return b.embedded != nil }

// Conn returns the underlying connection for what Bus does not wrap.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// Connected reports whether the connection is up.
func (b *Bus) Connected() bool { return b.nc.IsConnected() }

// Ping round-trips to the server, for readiness checks.
func (b *Bus) Ping(ctx context.Context) error {
	if !b.nc.IsConnected() {
		return errors.New("bus: not connected")
	}
	return b.nc.FlushWithContext(ctx)
}

// Publish sends data on subject. Delivery is at most once.
func (b *Bus) Publish(subject string, data []byte) error {
	return b.nc.Publish(subject, data)
}

// PublishLocal is Publish for messages whose only subscribers are this
// process's LocalSubscribe channels. On the embedded bus (one process, no
// listener) the message goes straight into each channel whose prefix its
// subject starts with, without NATS: no copy is written to and parsed
// back from the in-process server, and no goroutine of the NATS client or
// server is woken for it. A channel that is full drops it, as NATS drops
// a message for a slow consumer; delivery stays at most once. NATS
// subscribers do not see it. On an external bus it is Publish.
func (b *Bus) PublishLocal(subject string, data []byte) error {
	if b.embedded == nil {
		return b.Publish(subject, data)
	}
	b.localMu.RLock()
	defer b.localMu.RUnlock()
	for _, s := range b.local {
		if strings.HasPrefix(subject, s.prefix) {
			select {
			case s.ch <- &Msg{Subject: subject, Data: data}:
			default:
			}
		}
	}
	return nil
}

// LocalSubscribe puts each message PublishLocal sends on a subject that
// starts with prefix into ch, on the embedded bus; it does nothing on an
// external bus (there, subscribe through NATS). unsubscribe stops it.
func (b *Bus) LocalSubscribe(prefix string, ch chan *Msg) (unsubscribe func()) {
	if b.embedded == nil {
		return func() {}
	}
	s := &localSub{prefix: prefix, ch: ch}
	b.localMu.Lock()
	b.local = append(b.local, s)
	b.localMu.Unlock()
	return func() {
		b.localMu.Lock()
		defer b.localMu.Unlock()
		for i, o := range b.local {
			if o == s {
				b.local = append(b.local[:i:i], b.local[i+1:]...)
				return
			}
		}
	}
}

// Subscribe calls fn for each message on subject (wildcards allowed).
func (b *Bus) Subscribe(subject string, fn func(*Msg)) (*Subscription, error) {
	return b.nc.Subscribe(subject, fn)
}

// ChanSubscribe puts each message on subject into ch. Unlike Subscribe
// it starts no goroutine: many subscriptions can share one channel and
// one reader. A message that finds ch full is dropped (NATS reports a
// slow consumer), so the reader must keep up and the message must be one
// that may be lost.
func (b *Bus) ChanSubscribe(subject string, ch chan *Msg) (*Subscription, error) {
	return b.nc.ChanSubscribe(subject, ch)
}

// QueueSubscribe is Subscribe where each message goes to one member of queue.
func (b *Bus) QueueSubscribe(subject, queue string, fn func(*Msg)) (*Subscription, error) {
	return b.nc.QueueSubscribe(subject, queue, fn)
}

// Request sends data on subject and waits for one reply.
func (b *Bus) Request(ctx context.Context, subject string, data []byte) (*Msg, error) {
	return b.nc.RequestWithContext(ctx, subject, data)
}

// Close drains the connection — pending messages are delivered, handlers
// finish — and then stops the embedded server, if any.
func (b *Bus) Close() error {
	err := b.nc.Drain()
	if err == nil {
		deadline := time.Now().Add(drainTimeout)
		for !b.nc.IsClosed() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	b.nc.Close()
	if b.embedded != nil {
		b.embedded.Shutdown()
		b.embedded.WaitForShutdown()
	}
	if errors.Is(err, nats.ErrConnectionClosed) {
		return nil
	}
	return err
}
