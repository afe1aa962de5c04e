package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/kanal-server/kanal/keys"
)

// Message is what one device sends another: a Double Ratchet message and,
// until the receiver has answered, the PQXDH initial message with the
// sender's device certificate and identity binding, so the receiver can
// start its side of the session and check who started it, offline.
type Message struct {
	Initial     []byte `json:"initial,omitempty"`     // keys.InitialMessage, binary
	Certificate []byte `json:"certificate,omitempty"` // sender's DER device certificate, with Initial
	Binding     []byte `json:"binding,omitempty"`     // keys.SignIdentity of the sender's identity, with Initial
	Ciphertext  []byte `json:"ciphertext"`
}

// MarshalBinary encodes m for an envelope (JSON).
func (m *Message) MarshalBinary() ([]byte, error) {
	if len(m.Initial) == 0 && len(m.Certificate) == 0 && len(m.Binding) == 0 && m.Ciphertext != nil {
		// What json.Marshal writes for it, byte for byte, without
		// reflection: the form of every message after the first reply.
		b := make([]byte, 0, len(ciphertextOnlyPrefix)+base64.StdEncoding.EncodedLen(len(m.Ciphertext))+len(ciphertextOnlySuffix))
		b = append(b, ciphertextOnlyPrefix...)
		b = base64.StdEncoding.AppendEncode(b, m.Ciphertext)
		return append(b, ciphertextOnlySuffix...), nil
	}
	return json.Marshal(m)
}

// A message with only a ciphertext, as MarshalBinary writes it, is
// ciphertextOnlyPrefix || base64(ciphertext) || ciphertextOnlySuffix.
const (
	ciphertextOnlyPrefix = `{"ciphertext":"`
	ciphertextOnlySuffix = `"}`
)

// UnmarshalBinary decodes what MarshalBinary wrote, strictly and within
// MaxMessageBytes.
func (m *Message) UnmarshalBinary(b []byte) error {
	if len(b) > MaxMessageBytes {
		return fmt.Errorf("%w: over %d bytes", ErrBadMessage, MaxMessageBytes)
	}
	// The form MarshalBinary writes for a message with only a ciphertext
	// is read directly; it means the same to the JSON decoder below,
	// which reads everything else (and refuses what is wrong).
	if ct, ok := ciphertextOnly(b); ok {
		*m = Message{Ciphertext: ct}
		return nil
	}
	n, err := unmarshalMessageJSON(b)
	if err != nil {
		return err
	}
	*m = n
	return nil
}

// unmarshalMessageJSON is UnmarshalBinary with the JSON decoder for every
// input.
func unmarshalMessageJSON(b []byte) (Message, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var n Message
	if err := dec.Decode(&n); err != nil {
		return Message{}, fmt.Errorf("%w: %v", ErrBadMessage, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Message{}, fmt.Errorf("%w: trailing data", ErrBadMessage)
	}
	if len(n.Ciphertext) == 0 || (n.Initial != nil) != (n.Certificate != nil) || (n.Initial != nil) != (n.Binding != nil) {
		return Message{}, fmt.Errorf("%w: incomplete", ErrBadMessage)
	}
	return n, nil
}

// ciphertextOnly decodes b if it is exactly ciphertextOnlyPrefix, a
// non-empty padded standard base64 string and ciphertextOnlySuffix: no
// whitespace, no escapes, nothing else. For such input encoding/json
// decodes the same ciphertext (base64.StdEncoding); anything else is left
// to it.
func ciphertextOnly(b []byte) ([]byte, bool) {
	rest, ok := bytes.CutPrefix(b, []byte(ciphertextOnlyPrefix))
	if !ok {
		return nil, false
	}
	enc, ok := bytes.CutSuffix(rest, []byte(ciphertextOnlySuffix))
	if !ok || len(enc) == 0 {
		return nil, false
	}
	for _, c := range enc {
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '=') {
			return nil, false
		}
	}
	ct, err := base64.StdEncoding.AppendDecode(nil, enc)
	if err != nil || len(ct) == 0 {
		return nil, false
	}
	return ct, true
}

// sessionRecord is what the Store keeps per peer device: the current
// session, which every message to the device goes out under, and the
// sessions before it, kept for reading (Signal's archived sessions).
type sessionRecord struct {
	Session []byte `json:"session"`
	// Initial is set on the initiator's side until the session has
	// decrypted a reply: it goes out with every message, since any of them
	// may arrive first, and only a reply shows the peer has the session.
	Initial []byte `json:"initial,omitempty"`
	// InitialHash, on the responder's side, names the initial message that
	// started Session, so repeats of it are not run again.
	InitialHash []byte `json:"initial_hash,omitempty"`
	// Account is the peer device's account, from its verified certificate.
	Account string `json:"account,omitempty"`
	// Archived are the earlier sessions with the device, newest first, at
	// most MaxArchivedSessions: a session the peer started while ours was
	// waiting for its first answer, or the one a new session replaced.
	// Messages the peer sent under them still decrypt; nothing is sent
	// under them. Only the current record has archived ones.
	Archived []*sessionRecord `json:"archived,omitempty"`
	// Started holds the SHA-256 of the last MaxStartedSessions initial
	// messages of the device that started a session here, oldest first. An
	// initial message seen before never starts a session again: a replay
	// cannot replace the working session, even when the prekeys it names
	// are still held (a signed prekey, a last-resort ML-KEM prekey).
	Started [][]byte `json:"started,omitempty"`
	// Alt is how records written before archived sessions existed kept
	// the one other session; loadSession moves it into Archived.
	Alt *sessionRecord `json:"alt,omitempty"`

	// state is Session parsed, or nil until it is needed. Parsing a
	// session derives its X25519 public key, a scalar multiplication:
	// kept with the record in the cache (Client.sessions), it is done once
	// per session, not once per message.
	state *keys.Session
}

// maxCachedSessions bounds the records a Client keeps parsed in memory,
// and maxCachedSessionBytes the size of each: a record with many skipped
// message keys (a peer can make up to keys.MaxSkippedKeys) is parsed each
// time instead, so the cache stays within a few MiB whatever peers send.
const (
	maxCachedSessions     = 256
	maxCachedSessionBytes = 16 << 10
)

// cachedSession is a session record as the Store held it when it was last
// read or written here: raw is the stored value, rec its parsed form.
type cachedSession struct {
	raw []byte
	rec *sessionRecord
}

// session returns r's session, parsed once.
func (c *Client) session(r *sessionRecord) (*keys.Session, error) {
	if r.state == nil {
		s, err := keys.UnmarshalSession(c.rand, r.Session)
		if err != nil {
			return nil, err
		}
		r.state = s
	}
	return r.state, nil
}

// appendJSON appends r as json.Marshal encodes it, byte for byte (the
// tests compare them), without reflection: the record is stored again
// after every message.
func (r *sessionRecord) appendJSON(b []byte) []byte {
	if r == nil {
		return append(b, "null"...)
	}
	b = append(b, `{"session":`...)
	b = appendJSONBytes(b, r.Session)
	if len(r.Initial) > 0 {
		b = append(b, `,"initial":`...)
		b = appendJSONBytes(b, r.Initial)
	}
	if len(r.InitialHash) > 0 {
		b = append(b, `,"initial_hash":`...)
		b = appendJSONBytes(b, r.InitialHash)
	}
	if r.Account != "" {
		b = append(b, `,"account":`...)
		b = appendJSONString(b, r.Account)
	}
	if len(r.Archived) > 0 {
		b = append(b, `,"archived":[`...)
		for i, a := range r.Archived {
			if i > 0 {
				b = append(b, ',')
			}
			b = a.appendJSON(b)
		}
		b = append(b, ']')
	}
	if len(r.Started) > 0 {
		b = append(b, `,"started":[`...)
		for i, h := range r.Started {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONBytes(b, h)
		}
		b = append(b, ']')
	}
	if r.Alt != nil {
		b = append(b, `,"alt":`...)
		b = r.Alt.appendJSON(b)
	}
	return append(b, '}')
}

// appendJSONBytes appends v as encoding/json encodes a []byte.
func appendJSONBytes(b, v []byte) []byte {
	if v == nil {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, v)
	return append(b, '"')
}

// appendJSONString appends s as encoding/json encodes a string: directly
// when it is printable ASCII that needs no escape (an account id), else
// through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// putSession stores r as the record of device and keeps it parsed. Called
// with c.mu held.
func (c *Client) putSession(device string, r *sessionRecord) error {
	b := r.appendJSON(make([]byte, 0, 64+base64.StdEncoding.EncodedLen(len(r.Session))))
	err := c.store.Put(nameSession(device), b)
	if err != nil {
		c.forgetSession(device)
		return err
	}
	if len(b) > maxCachedSessionBytes {
		c.forgetSession(device)
		return nil
	}
	if c.sessions == nil {
		c.sessions = map[string]cachedSession{}
	}
	if _, ok := c.sessions[device]; !ok && len(c.sessions) >= maxCachedSessions {
		for k := range c.sessions { // any one
			delete(c.sessions, k)
			break
		}
	}
	c.sessions[device] = cachedSession{raw: b, rec: r}
	return nil
}

// forgetSession drops the parsed record of device: the next loadSession
// reads the Store. Every change of a record that did not reach the Store
// ends here, so the cache never holds what the Store does not. Called with
// c.mu held.
func (c *Client) forgetSession(device string) { delete(c.sessions, device) }

// archive makes old the newest archived session of r, dropping the oldest
// beyond MaxArchivedSessions.
func (r *sessionRecord) archive(old *sessionRecord) {
	old.Archived, old.Started, old.Alt = nil, nil, nil
	r.Archived = append([]*sessionRecord{old}, r.Archived...)
	if len(r.Archived) > MaxArchivedSessions {
		r.Archived = r.Archived[:MaxArchivedSessions]
	}
}

// started records that the initial message with hash h started a session.
func (r *sessionRecord) started(h []byte) {
	r.Started = append(r.Started, h)
	if len(r.Started) > MaxStartedSessions {
		r.Started = r.Started[len(r.Started)-MaxStartedSessions:]
	}
}

// withInitial returns the session of r (current or archived) that the
// initial message with hash h started, or nil.
func (r *sessionRecord) withInitial(h []byte) *sessionRecord {
	if r == nil {
		return nil
	}
	for _, s := range append([]*sessionRecord{r}, r.Archived...) {
		if bytes.Equal(s.InitialHash, h) {
			return s
		}
	}
	return nil
}

// startedBefore reports whether the initial message with hash h has
// started a session here before.
func (r *sessionRecord) startedBefore(h []byte) bool {
	if r == nil {
		return false
	}
	for _, k := range r.Started {
		if bytes.Equal(k, h) {
			return true
		}
	}
	return r.withInitial(h) != nil
}

func (c *Client) loadSession(device string) (*sessionRecord, error) {
	b, err := c.store.Get(nameSession(device))
	if errors.Is(err, ErrNotFound) {
		c.forgetSession(device)
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	// The Store is the truth: the record parsed before is used only while
	// the Store holds exactly what it was parsed from (another Client on
	// the same Store may have written since).
	if cs, ok := c.sessions[device]; ok {
		if bytes.Equal(cs.raw, b) {
			return cs.rec, nil
		}
		c.forgetSession(device)
	}
	var r sessionRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("messaging/client: stored session with %s: %w", device, err)
	}
	if r.Alt != nil {
		alt := r.Alt
		r.Alt = nil
		for _, s := range []*sessionRecord{&r, alt} {
			if s.InitialHash != nil {
				r.started(s.InitialHash)
			}
		}
		r.archive(alt)
	}
	return &r, nil
}

// HasSession reports whether this device has a session with device.
func (c *Client) HasSession(device string) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, err := c.loadSession(device)
	return r != nil, err
}

// StartSession runs PQXDH as the initiator against a verified bundle and
// makes the new session the current one with that device; an earlier one
// is archived, so what the peer sent under it still decrypts.
func (c *Client) StartSession(b *Bundle) (err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer func() {
		if err != nil {
			c.forgetSession(b.Device.DeviceID)
		}
	}()
	if _, err := c.loadIdentity(); err != nil {
		return err
	}
	init, err := keys.InitiatePQXDH(c.rand, c.idKey, &b.Prekeys)
	if err != nil {
		return fmt.Errorf("messaging/client: start session with %s: %w", b.Device.DeviceID, err)
	}
	s, err := keys.NewInitiatorSession(c.rand, init.SharedKey, init.AssociatedData, init.RemoteRatchetKey)
	if err != nil {
		return err
	}
	initial, err := init.Message.MarshalBinary()
	if err != nil {
		return err
	}
	state, err := s.MarshalBinary()
	if err != nil {
		return err
	}
	nr := &sessionRecord{Session: state, Initial: initial, Account: b.Device.AccountID, state: s}
	old, err := c.loadSession(b.Device.DeviceID)
	if err != nil {
		return err
	}
	if old != nil {
		nr.Archived, nr.Started = old.Archived, old.Started
		nr.archive(old)
	}
	return c.putSession(b.Device.DeviceID, nr)
}

// Encrypt encrypts plaintext for a device this client has a session with.
func (c *Client) Encrypt(device string, plaintext []byte) (_ *Message, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer func() {
		if err != nil {
			c.forgetSession(device)
		}
	}()
	r, err := c.loadSession(device)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoSession, device)
	}
	s, err := c.session(r)
	if err != nil {
		return nil, err
	}
	ct, err := s.Encrypt(plaintext)
	if err != nil {
		return nil, fmt.Errorf("messaging/client: encrypt for %s: %w", device, err)
	}
	if r.Session, err = s.MarshalBinary(); err != nil {
		return nil, err
	}
	if err := c.putSession(device, r); err != nil {
		return nil, err
	}
	m := &Message{Ciphertext: ct}
	if r.Initial != nil {
		if _, err := c.loadIdentity(); err != nil {
			return nil, err
		}
		// The binding signs the identity key and the device id, which do
		// not change for the Client's life: signed once, it goes with every
		// initial message (each verifier checks the same statement).
		if c.binding == nil {
			if c.binding, err = keys.SignIdentity(c.deviceKey, c.idKey.Public(), c.device); err != nil {
				return nil, err
			}
		}
		m.Initial, m.Certificate, m.Binding = r.Initial, c.certDER, c.binding
	}
	return m, nil
}

// Decrypt decrypts a message from device (the sender the server names).
// A message that starts a session is accepted only if the sender's
// certificate chains to the CA, names that device and is not revoked, and
// its device key bound the identity key in the initial message. The
// one-time prekeys it used are deleted once it decrypts.
//
// A message is tried under the current session, then under the archived
// ones. An initial message that started a session before is read only
// under that session; one that is new starts a session, which becomes the
// current one (the old one is archived) only once its first message has
// decrypted. If both devices started a session at once, the one started
// by the device with the smaller id stays current; the other is archived
// for reading whatever was sent under it. The initiator keeps sending its
// initial message until its session has decrypted a reply.
func (c *Client) Decrypt(ctx context.Context, device string, m *Message) ([]byte, error) {
	pt, started, err := c.decrypt(ctx, device, m)
	if err != nil {
		return nil, err
	}
	if started != nil {
		// The key that started a session is pinned, or reported if it
		// is not the pinned one (after c.mu is released: OnKeyChange may
		// call back into the client).
		if err := c.observeKey(started.account, device, started.key); err != nil {
			return nil, err
		}
	}
	return pt, nil
}

// startedBy is the verified sender of an initial message that started a
// session.
type startedBy struct {
	account string
	key     keys.IdentityPublic
}

func (c *Client) decrypt(ctx context.Context, device string, m *Message) (_ []byte, _ *startedBy, err error) {
	if len(m.Ciphertext) == 0 {
		return nil, nil, fmt.Errorf("%w: no ciphertext", ErrBadMessage)
	}
	// The sender's certificate status is fetched before taking the lock:
	// a message that may start a session needs it, and the fetch is
	// network I/O.
	var status statusFunc
	// So is the sender's log entry, unless the initial message already
	// started a session here (the initiator repeats it until answered).
	logErr := errLogUnchecked
	if m.Initial != nil {
		status = c.statusOf(ctx, m.Certificate)
		h := sha256.Sum256(m.Initial)
		c.mu.Lock()
		r, err := c.loadSession(device)
		known := err == nil && r != nil && r.withInitial(h[:]) != nil
		c.mu.Unlock()
		if !known {
			logErr = c.senderLogged(ctx, device, m.Certificate)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	defer func() {
		if err != nil {
			c.forgetSession(device)
		}
	}()
	r, err := c.loadSession(device)
	if err != nil {
		return nil, nil, err
	}
	if m.Initial == nil {
		if r == nil {
			return nil, nil, fmt.Errorf("%w: %s", ErrNoSession, device)
		}
		pt, err := c.decryptAny(r, m.Ciphertext)
		if err != nil {
			return nil, nil, err
		}
		return pt, nil, c.putSession(device, r)
	}
	h := sha256.Sum256(m.Initial)
	if known := r.withInitial(h[:]); known != nil {
		pt, err := c.decryptWith(known, m.Ciphertext)
		if err != nil {
			return nil, nil, err
		}
		return pt, nil, c.putSession(device, r)
	}
	if r.startedBefore(h[:]) {
		// Its session is gone from the archive: a replay, refused.
		return nil, nil, fmt.Errorf("messaging/client: initial message from %s started a session before: %w", device, keys.ErrReplay)
	}

	// A new session started by the peer.
	nr, pt, used, err := c.respond(device, m, status, logErr)
	if err != nil {
		return nil, nil, err
	}
	nr.InitialHash = h[:]
	var init keys.InitialMessage
	if err := init.UnmarshalBinary(m.Initial); err != nil { // respond parsed it already
		return nil, nil, err
	}
	by := &startedBy{account: nr.Account, key: init.Identity}
	switch {
	case r == nil:
		r = nr
	case r.Initial != nil && c.device < device:
		// Both started; ours wins and theirs is kept for reading.
		r.archive(nr)
		if r.Account == "" {
			r.Account = nr.Account
		}
	default:
		nr.Archived, nr.Started = r.Archived, r.Started
		nr.archive(r)
		r = nr
	}
	r.started(h[:])
	if err := c.putSession(device, r); err != nil {
		return nil, nil, err
	}
	for _, name := range used {
		if err := c.store.Delete(name); err != nil {
			return nil, nil, err
		}
	}
	return pt, by, nil
}

// decryptAny decrypts under r's current session, then under its archived
// ones, newest first, and updates the one that decrypted. The current
// session stops sending the initial message once it has decrypted a reply.
// When none decrypts, the error is the current session's, unless one of
// them recognised a replay.
func (c *Client) decryptAny(r *sessionRecord, ct []byte) ([]byte, error) {
	var first error
	for i, s := range append([]*sessionRecord{r}, r.Archived...) {
		pt, err := c.decryptWith(s, ct)
		if err == nil {
			return pt, nil
		}
		if i == 0 || errors.Is(err, keys.ErrReplay) && !errors.Is(first, keys.ErrReplay) {
			first = err
		}
	}
	return nil, first
}

// decryptWith decrypts under r's session and updates r on success.
func (c *Client) decryptWith(r *sessionRecord, ct []byte) ([]byte, error) {
	s, err := c.session(r)
	if err != nil {
		return nil, err
	}
	// A message that does not decrypt leaves s as it was (keys.Session),
	// so the parsed session stays valid for r.Session.
	pt, err := s.Decrypt(ct)
	if err != nil {
		return nil, fmt.Errorf("messaging/client: decrypt: %w", err)
	}
	if r.Session, err = s.MarshalBinary(); err != nil {
		return nil, err
	}
	if s.HasReceivingChain() {
		r.Initial = nil // the peer answered: it has the session
	}
	return pt, nil
}

// errLogUnchecked stands for a log check Decrypt skipped because the
// session looked started; if it was not after all, the message is refused
// and may be tried again.
var errLogUnchecked = fmt.Errorf("%w: the sender's log entry was not checked; try again", ErrLog)

// respond checks the sender of an initial message and runs PQXDH as the
// responder. used names the one-time private keys to delete once the new
// session is stored. Called with c.mu held.
func (c *Client) respond(device string, m *Message, status statusFunc, logErr error) (*sessionRecord, []byte, []string, error) {
	var init keys.InitialMessage
	if err := init.UnmarshalBinary(m.Initial); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: initial message: %v", ErrBadMessage, err)
	}
	di, err := c.checkDevice(m.Certificate, device, status)
	if err != nil {
		return nil, nil, nil, err
	}
	if logErr != nil {
		// The sender's device certificate is not in the log the
		// directory proves (senderLogged).
		return nil, nil, nil, logErr
	}
	if err := keys.VerifyIdentity(di.PublicKey, init.Identity, device, m.Binding); err != nil {
		return nil, nil, nil, untrusted(device, "identity key not bound to the device key: %v", err)
	}
	if _, err := c.loadIdentity(); err != nil {
		return nil, nil, nil, err
	}
	pk := keys.ResponderPrekeys{Identity: c.idKey}
	var used []string
	load := func(name string, k interface{ UnmarshalBinary([]byte) error }) error {
		b, err := c.store.Get(name)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%w: %s", ErrUnknownKey, name)
		} else if err != nil {
			return err
		}
		return k.UnmarshalBinary(b)
	}
	if err := load(nameSPK(init.SignedPrekeyID), &pk.SignedPrekey); err != nil {
		return nil, nil, nil, err
	}
	if err := load(namePQ(init.PQPrekeyID), &pk.PQPrekey); err != nil {
		return nil, nil, nil, err
	}
	if !pk.PQPrekey.LastResort() {
		used = append(used, namePQ(init.PQPrekeyID))
	}
	if init.HasOneTimePrekey {
		var opk keys.OneTimePrekeyPrivate
		if err := load(nameOPK(init.OneTimePrekeyID), &opk); err != nil {
			return nil, nil, nil, err
		}
		pk.OneTimePrekey = &opk
		used = append(used, nameOPK(init.OneTimePrekeyID))
	}
	sk, ad, err := keys.RespondPQXDH(pk, &init)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("messaging/client: session from %s: %w", device, err)
	}
	s, err := keys.NewResponderSession(c.rand, sk, ad, pk.SignedPrekey)
	if err != nil {
		return nil, nil, nil, err
	}
	pt, err := s.Decrypt(m.Ciphertext)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("messaging/client: decrypt first message from %s: %w", device, err)
	}
	state, err := s.MarshalBinary()
	if err != nil {
		return nil, nil, nil, err
	}
	return &sessionRecord{Session: state, Account: di.AccountID, state: s}, pt, used, nil
}

// peerAccount returns the account of a device this client has a session
// with, as its verified certificate named it.
func (c *Client) peerAccount(device string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, err := c.loadSession(device)
	if err != nil {
		return "", err
	}
	if r == nil || r.Account == "" {
		return "", fmt.Errorf("%w: %s", ErrNoSession, device)
	}
	return r.Account, nil
}

// sessionAccount returns the account of a device this client has a
// session with, as its verified certificate named it; "" when there is no
// session or it does not record the account.
func (c *Client) sessionAccount(device string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, err := c.loadSession(device)
	if err != nil || r == nil {
		return "", err
	}
	return r.Account, nil
}
