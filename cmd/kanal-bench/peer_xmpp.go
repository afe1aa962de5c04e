package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// xmppDirect runs the direct workload against an XMPP server (Prosody in
// bench/compare.sh): every device registers in band (XEP-0077), logs in
// with SASL PLAIN over a plain loopback socket (kanal's bench also speaks
// plain HTTP on loopback), binds a resource and sends <message
// type='chat'> stanzas to its peer's full JID. A send completes when the
// server answers a ping sent after the message on the same stream: the
// server handles a session's stanzas in order, so the answer means the
// message was routed (and archived, where the server archives).
func (r *runner) xmppDirect(ctx context.Context) error {
	addr := r.o.peerURL
	if addr == "" {
		addr = "127.0.0.1:5222"
	}
	n := r.o.devices
	conns := make([]*xmppConn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.close()
			}
		}
	}()
	start := time.Now()
	err := parallel(ctx, n, r.o.provisionWorkers, func(i int) error {
		user := fmt.Sprintf("b%su%d", r.runID, i)
		c, err := dialXMPP(ctx, addr, r.o.xmppDomain, user, r.net.sourceFor(i))
		if err != nil {
			return fmt.Errorf("xmpp %s: %w", user, err)
		}
		conns[i] = c
		c.onMessage = func(body string) {
			now := time.Now()
			pt, err := base64.StdEncoding.DecodeString(body)
			if err != nil || len(pt) < payloadHead {
				r.errs.add("xmpp: bad body")
				return
			}
			if pt[0] != kindMeasured {
				return
			}
			if rec := r.rec.Load(); rec != nil {
				rec.Record(now, now.Sub(time.Unix(0, int64(binary.BigEndian.Uint64(pt[1:])))))
				r.delivered.Add(1)
				r.deliveredAt(now)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	took := time.Since(start)
	r.res.Provisioning = append(r.res.Provisioning, provisionStats{Devices: n, TookS: took.Seconds(), PerSecond: float64(n) / took.Seconds()})
	var senders []sender
	for i := 0; i+1 < n; i += 2 {
		senders = append(senders, sender{d: &device{n: i}, recips: []string{conns[i+1].jid}},
			sender{d: &device{n: i + 1}, recips: []string{conns[i].jid}})
	}
	r.publish = func(ctx context.Context, s sender, pt []byte) error {
		return conns[s.d.n].send(ctx, s.recips[0], base64.StdEncoding.EncodeToString(pt))
	}
	return r.measure(ctx, senders)
}

// xmppConn is a minimal XMPP client stream: enough of RFC 6120 to
// register, authenticate, bind and exchange messages and pings.
type xmppConn struct {
	conn      net.Conn
	dec       *xml.Decoder
	wmu       sync.Mutex
	w         *bufio.Writer
	jid       string
	onMessage func(body string)

	mu      sync.Mutex
	pending map[string]chan error
	nextID  atomic.Uint64
	done    chan struct{}
	err     error
}

func dialXMPP(ctx context.Context, addr, domain, user string, local net.Addr) (*xmppConn, error) {
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: local}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &xmppConn{conn: nc, w: bufio.NewWriter(nc), pending: map[string]chan error{}, done: make(chan struct{})}
	nc.SetDeadline(time.Now().Add(60 * time.Second))
	fail := func(err error) (*xmppConn, error) { nc.Close(); return nil, err }
	var pw [12]byte
	rand.Read(pw[:])
	password := hex.EncodeToString(pw[:])
	if err := c.open(domain); err != nil {
		return fail(err)
	}
	// In-band registration on the unauthenticated stream (XEP-0077).
	if err := c.write(`<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>%s</username><password>%s</password></query></iq>`, user, password); err != nil {
		return fail(err)
	}
	if err := c.expectIQ("reg"); err != nil {
		return fail(fmt.Errorf("register: %w", err))
	}
	auth := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
	if err := c.write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>`, auth); err != nil {
		return fail(err)
	}
	se, err := c.nextElement()
	if err != nil {
		return fail(err)
	}
	if se.Name.Local != "success" {
		return fail(fmt.Errorf("auth: %s", se.Name.Local))
	}
	if err := c.dec.Skip(); err != nil {
		return fail(err)
	}
	if err := c.open(domain); err != nil {
		return fail(err)
	}
	if err := c.write(`<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>bench</resource></bind></iq>`); err != nil {
		return fail(err)
	}
	var bind struct {
		Type string `xml:"type,attr"`
		JID  string `xml:"bind>jid"`
	}
	se, err = c.nextElement()
	if err != nil {
		return fail(err)
	}
	if err := c.dec.DecodeElement(&bind, &se); err != nil || bind.Type != "result" || bind.JID == "" {
		return fail(fmt.Errorf("bind: %v %+v", err, bind))
	}
	c.jid = bind.JID
	if err := c.write(`<presence/>`); err != nil {
		return fail(err)
	}
	nc.SetDeadline(time.Time{})
	go c.readLoop()
	return c, nil
}

// open starts a stream and reads the server's header and features.
func (c *xmppConn) open(domain string) error {
	if err := c.write(`<?xml version='1.0'?><stream:stream to='%s' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`, domain); err != nil {
		return err
	}
	c.dec = xml.NewDecoder(c.conn)
	for {
		tok, err := c.dec.Token()
		if err != nil {
			return err
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "stream" {
			break
		}
	}
	se, err := c.nextElement()
	if err != nil {
		return err
	}
	if se.Name.Local != "features" {
		return fmt.Errorf("expected stream features, got %s", se.Name.Local)
	}
	return c.dec.Skip()
}

func (c *xmppConn) nextElement() (xml.StartElement, error) {
	for {
		tok, err := c.dec.Token()
		if err != nil {
			return xml.StartElement{}, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return t, nil
		case xml.EndElement:
			return xml.StartElement{}, errors.New("stream closed by the server")
		}
	}
}

func (c *xmppConn) expectIQ(id string) error {
	se, err := c.nextElement()
	if err != nil {
		return err
	}
	var iq struct {
		ID    string `xml:"id,attr"`
		Type  string `xml:"type,attr"`
		Error struct {
			Inner []byte `xml:",innerxml"`
		} `xml:"error"`
	}
	if err := c.dec.DecodeElement(&iq, &se); err != nil {
		return err
	}
	if iq.ID != id || iq.Type != "result" {
		return fmt.Errorf("iq %s: %s %s", iq.ID, iq.Type, iq.Error.Inner)
	}
	return nil
}

func (c *xmppConn) write(format string, a ...any) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	fmt.Fprintf(c.w, format, a...)
	return c.w.Flush()
}

func (c *xmppConn) readLoop() {
	defer close(c.done)
	for {
		se, err := c.nextElement()
		if err != nil {
			c.fail(err)
			return
		}
		switch se.Name.Local {
		case "message":
			var m struct {
				Body string `xml:"body"`
			}
			if err := c.dec.DecodeElement(&m, &se); err != nil {
				c.fail(err)
				return
			}
			if m.Body != "" && c.onMessage != nil {
				c.onMessage(m.Body)
			}
		case "iq":
			var iq struct {
				ID   string `xml:"id,attr"`
				Type string `xml:"type,attr"`
			}
			if err := c.dec.DecodeElement(&iq, &se); err != nil {
				c.fail(err)
				return
			}
			c.mu.Lock()
			ch := c.pending[iq.ID]
			delete(c.pending, iq.ID)
			c.mu.Unlock()
			if ch != nil {
				if iq.Type == "result" {
					ch <- nil
				} else {
					ch <- fmt.Errorf("iq %s", iq.Type)
				}
			}
		default:
			if err := c.dec.Skip(); err != nil {
				c.fail(err)
				return
			}
		}
	}
}

func (c *xmppConn) fail(err error) {
	c.mu.Lock()
	c.err = err
	for id, ch := range c.pending {
		ch <- err
		delete(c.pending, id)
	}
	c.mu.Unlock()
}

// send writes a chat message to jid and a ping behind it, and returns when
// the ping is answered.
func (c *xmppConn) send(ctx context.Context, jid, body string) error {
	id := "p" + strconv.FormatUint(c.nextID.Add(1), 10)
	ch := make(chan error, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return c.err
	}
	c.pending[id] = ch
	c.mu.Unlock()
	if err := c.write(`<message to='%s' type='chat' id='m%s'><body>%s</body></message><iq type='get' id='%s'><ping xmlns='urn:xmpp:ping'/></iq>`,
		jid, id, body, id); err != nil {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return errors.New("xmpp: no answer in 30s")
	}
}

func (c *xmppConn) close() {
	c.write(`</stream:stream>`)
	c.conn.Close()
}
