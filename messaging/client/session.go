package client

import (
	"bytes"
	"context"
	"crypto/sha256"
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
func (m *Message) MarshalBinary() ([]byte, error) { return json.Marshal(m) }

// UnmarshalBinary decodes what MarshalBinary wrote, strictly and within
// MaxMessageBytes.
func (m *Message) UnmarshalBinary(b []byte) error {
	if len(b) > MaxMessageBytes {
		return fmt.Errorf("%w: over %d bytes", ErrBadMessage, MaxMessageBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var n Message
	if err := dec.Decode(&n); err != nil {
		return fmt.Errorf("%w: %v", ErrBadMessage, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data", ErrBadMessage)
	}
	if len(n.Ciphertext) == 0 || (n.Initial != nil) != (n.Certificate != nil) || (n.Initial != nil) != (n.Binding != nil) {
		return fmt.Errorf("%w: incomplete", ErrBadMessage)
	}
	*m = n
	return nil
}

// sessionRecord is what the Store keeps per peer device.
type sessionRecord struct {
	Session []byte `json:"session"`
	// Initial is set on the initiator's side until the peer answers: it
	// goes out with every message, since any of them may arrive first.
	Initial []byte `json:"initial,omitempty"`
	// InitialHash, on the responder's side, names the initial message that
	// started Session, so repeats of it are not run again.
	InitialHash []byte `json:"initial_hash,omitempty"`
	// Alt is a second session the peer started while ours was waiting
	// for its first answer; see Decrypt.
	Alt *sessionRecord `json:"alt,omitempty"`
	// Account is the peer device's account, from its verified certificate.
	Account string `json:"account,omitempty"`
}

func (c *Client) loadSession(device string) (*sessionRecord, error) {
	b, err := c.store.Get(nameSession(device))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var r sessionRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("messaging/client: stored session with %s: %w", device, err)
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
// stores the new session, replacing any earlier one with that device.
func (c *Client) StartSession(b *Bundle) error {
	c.mu.Lock()
	defer c.mu.Unlock()
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
	return c.putJSON(nameSession(b.Device.DeviceID), &sessionRecord{Session: state, Initial: initial, Account: b.Device.AccountID})
}

// Encrypt encrypts plaintext for a device this client has a session with.
func (c *Client) Encrypt(device string, plaintext []byte) (*Message, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, err := c.loadSession(device)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoSession, device)
	}
	s, err := keys.UnmarshalSession(c.rand, r.Session)
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
	if err := c.putJSON(nameSession(device), r); err != nil {
		return nil, err
	}
	m := &Message{Ciphertext: ct}
	if r.Initial != nil {
		if _, err := c.loadIdentity(); err != nil {
			return nil, err
		}
		binding, err := keys.SignIdentity(c.deviceKey, c.idKey.Public(), c.device)
		if err != nil {
			return nil, err
		}
		m.Initial, m.Certificate, m.Binding = r.Initial, c.certDER, binding
	}
	return m, nil
}

// Decrypt decrypts a message from device (the sender the server names).
// A message that starts a session is accepted only if the sender's
// certificate chains to the CA, names that device and is not revoked, and
// its device key bound the identity key in the initial message. The
// one-time prekeys it used are deleted once it decrypts.
//
// If both devices started a session at once, the one started by the
// device with the smaller id is kept for sending; the other is kept for
// reading whatever was sent under it.
func (c *Client) Decrypt(ctx context.Context, device string, m *Message) ([]byte, error) {
	if len(m.Ciphertext) == 0 {
		return nil, fmt.Errorf("%w: no ciphertext", ErrBadMessage)
	}
	// The sender's certificate status is fetched before taking the lock:
	// a message that may start a session needs it, and the fetch is
	// network I/O.
	var status statusFunc
	if m.Initial != nil {
		status = c.statusOf(ctx, m.Certificate)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r, err := c.loadSession(device)
	if err != nil {
		return nil, err
	}
	if m.Initial == nil {
		if r == nil {
			return nil, fmt.Errorf("%w: %s", ErrNoSession, device)
		}
		pt, err := c.decryptWith(r, m.Ciphertext)
		if err != nil {
			return nil, err
		}
		r.Initial = nil // the peer answered: it has the session
		return pt, c.putJSON(nameSession(device), r)
	}
	h := sha256.Sum256(m.Initial)
	for _, known := range []*sessionRecord{r, altOf(r)} {
		if known != nil && bytes.Equal(known.InitialHash, h[:]) {
			pt, err := c.decryptWith(known, m.Ciphertext)
			if err != nil {
				return nil, err
			}
			return pt, c.putJSON(nameSession(device), r)
		}
	}

	// A new session started by the peer.
	nr, pt, used, err := c.respond(device, m, status)
	if err != nil {
		return nil, err
	}
	nr.InitialHash = h[:]
	switch {
	case r != nil && r.Initial != nil && c.device < device:
		// Both started; ours wins and theirs is kept for reading.
		r.Alt = nr
		if r.Account == "" {
			r.Account = nr.Account
		}
	default:
		r = nr
	}
	if err := c.putJSON(nameSession(device), r); err != nil {
		return nil, err
	}
	for _, name := range used {
		if err := c.store.Delete(name); err != nil {
			return nil, err
		}
	}
	return pt, nil
}

func altOf(r *sessionRecord) *sessionRecord {
	if r == nil {
		return nil
	}
	return r.Alt
}

// decryptWith decrypts under r's session and updates r on success.
func (c *Client) decryptWith(r *sessionRecord, ct []byte) ([]byte, error) {
	s, err := keys.UnmarshalSession(c.rand, r.Session)
	if err != nil {
		return nil, err
	}
	pt, err := s.Decrypt(ct)
	if err != nil {
		return nil, fmt.Errorf("messaging/client: decrypt: %w", err)
	}
	if r.Session, err = s.MarshalBinary(); err != nil {
		return nil, err
	}
	return pt, nil
}

// respond checks the sender of an initial message and runs PQXDH as the
// responder. used names the one-time private keys to delete once the new
// session is stored. Called with c.mu held.
func (c *Client) respond(device string, m *Message, status statusFunc) (*sessionRecord, []byte, []string, error) {
	var init keys.InitialMessage
	if err := init.UnmarshalBinary(m.Initial); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: initial message: %v", ErrBadMessage, err)
	}
	di, err := c.checkDevice(m.Certificate, device, status)
	if err != nil {
		return nil, nil, nil, err
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
	return &sessionRecord{Session: state, Account: di.AccountID}, pt, used, nil
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
