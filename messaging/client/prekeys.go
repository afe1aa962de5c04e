package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/kanal-server/kanal/keys"
	"github.com/kanal-server/kanal/messaging"
)

// Names in the Store. Private prekeys are stored under their kind and id,
// so that an initial message's ids find them.
const (
	nameIdentity = "identity"
	nameMeta     = "meta"
)

func nameSPK(id uint32) string         { return "spk/" + strconv.FormatUint(uint64(id), 10) }
func namePQ(id uint32) string          { return "pq/" + strconv.FormatUint(uint64(id), 10) }
func nameOPK(id uint32) string         { return "opk/" + strconv.FormatUint(uint64(id), 10) }
func nameSession(device string) string { return "session/" + device }

// meta records which prekeys are current and the next free ids.
type meta struct {
	SignedPrekey uint32 `json:"signed_prekey"`
	LastResort   uint32 `json:"last_resort"`
	NextOneTime  uint32 `json:"next_one_time"`
	NextPQ       uint32 `json:"next_pq"`
}

func (c *Client) putJSON(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.store.Put(name, b)
}

func (c *Client) putKey(name string, k interface{ MarshalBinary() ([]byte, error) }) error {
	b, err := k.MarshalBinary()
	if err != nil {
		return err
	}
	return c.store.Put(name, b)
}

// loadIdentity loads the identity and meta, creating them (with a signed
// prekey and a last-resort prekey) on first use. Called with c.mu held.
func (c *Client) loadIdentity() (created bool, err error) {
	if c.idMeta != nil {
		return false, nil
	}
	b, err := c.store.Get(nameIdentity)
	if err == nil {
		var id keys.IdentityPrivate
		if err := id.UnmarshalBinary(b); err != nil {
			return false, fmt.Errorf("messaging/client: stored identity: %w", err)
		}
		mb, err := c.store.Get(nameMeta)
		if err != nil {
			return false, fmt.Errorf("messaging/client: stored prekey state: %w", err)
		}
		var m meta
		if err := json.Unmarshal(mb, &m); err != nil {
			return false, fmt.Errorf("messaging/client: stored prekey state: %w", err)
		}
		c.idKey, c.idMeta = id, &m
		return false, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return false, err
	}
	id, err := keys.GenerateIdentity(c.rand)
	if err != nil {
		return false, err
	}
	m := &meta{SignedPrekey: 1, LastResort: 1, NextOneTime: 1, NextPQ: 2}
	spk, err := keys.GenerateSignedPrekey(c.rand, m.SignedPrekey)
	if err != nil {
		return false, err
	}
	lr, err := keys.GeneratePQPrekey(c.rand, m.LastResort, true)
	if err != nil {
		return false, err
	}
	// Private keys first, the identity last: a crash in between leaves no
	// identity without its prekeys.
	if err := c.putKey(nameSPK(m.SignedPrekey), spk); err != nil {
		return false, err
	}
	if err := c.putKey(namePQ(m.LastResort), lr); err != nil {
		return false, err
	}
	if err := c.putJSON(nameMeta, m); err != nil {
		return false, err
	}
	if err := c.putKey(nameIdentity, id); err != nil {
		return false, err
	}
	c.idKey, c.idMeta = id, m
	return true, nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func text(k interface{ MarshalText() ([]byte, error) }) (string, error) {
	b, err := k.MarshalText()
	return string(b), err
}

// publishRequest builds the PUT /v1/prekeys body from the stored keys.
// Called with c.mu held.
func (c *Client) publishRequest() (*messaging.PublishRequest, error) {
	var spk keys.SignedPrekeyPrivate
	var lr keys.PQPrekeyPrivate
	if b, err := c.store.Get(nameSPK(c.idMeta.SignedPrekey)); err != nil {
		return nil, err
	} else if err := spk.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	if b, err := c.store.Get(namePQ(c.idMeta.LastResort)); err != nil {
		return nil, err
	} else if err := lr.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	pub := c.idKey.Public()
	binding, err := keys.SignIdentity(c.deviceKey, pub, c.device)
	if err != nil {
		return nil, err
	}
	spkSig, err := c.idKey.SignSignedPrekey(spk.Public())
	if err != nil {
		return nil, err
	}
	lrSig, err := c.idKey.SignPQPrekey(lr.Public())
	if err != nil {
		return nil, err
	}
	r := &messaging.PublishRequest{IdentityBinding: b64(binding), SignedPrekeySig: b64(spkSig), LastResortSig: b64(lrSig)}
	if r.Identity, err = text(pub); err != nil {
		return nil, err
	}
	if r.SignedPrekey, err = text(spk.Public()); err != nil {
		return nil, err
	}
	if r.LastResort, err = text(lr.Public()); err != nil {
		return nil, err
	}
	return r, nil
}

// newBatch generates n one-time X25519 and m one-time ML-KEM prekeys,
// stores their private halves and the next ids in one write where the
// Store allows, and returns the upload. Called with c.mu held.
func (c *Client) newBatch(n, m int) (*messaging.PrekeyBatch, error) {
	var b messaging.PrekeyBatch
	next := *c.idMeta
	private := map[string][]byte{}
	add := func(name string, k interface{ MarshalBinary() ([]byte, error) }) error {
		v, err := k.MarshalBinary()
		private[name] = v
		return err
	}
	for range n {
		k, err := keys.GenerateOneTimePrekey(c.rand, next.NextOneTime)
		if err != nil {
			return nil, err
		}
		next.NextOneTime++
		if err := add(nameOPK(k.ID()), k); err != nil {
			return nil, err
		}
		t, err := text(k.Public())
		if err != nil {
			return nil, err
		}
		b.OneTimePrekeys = append(b.OneTimePrekeys, t)
	}
	for range m {
		k, err := keys.GeneratePQPrekey(c.rand, next.NextPQ, false)
		if err != nil {
			return nil, err
		}
		next.NextPQ++
		if err := add(namePQ(k.ID()), k); err != nil {
			return nil, err
		}
		sig, err := c.idKey.SignPQPrekey(k.Public())
		if err != nil {
			return nil, err
		}
		t, err := text(k.Public())
		if err != nil {
			return nil, err
		}
		b.PQPrekeys = append(b.PQPrekeys, messaging.SignedPQKey{Key: t, Sig: b64(sig)})
	}
	// The next ids are saved with the keys, before the upload, so an id is
	// never reused even if the upload's answer is lost.
	mb, err := json.Marshal(&next)
	if err != nil {
		return nil, err
	}
	private[nameMeta] = mb
	if bs, ok := c.store.(BatchStore); ok {
		err = bs.PutAll(private)
	} else {
		// Keys first, the ids last: a crash in between leaves unused keys,
		// never a reused id.
		for name, v := range private {
			if name != nameMeta {
				if err = c.store.Put(name, v); err != nil {
					break
				}
			}
		}
		if err == nil {
			err = c.store.Put(nameMeta, mb)
		}
	}
	if err != nil {
		return nil, err
	}
	*c.idMeta = next
	return &b, nil
}

// Publish creates this device's identity and prekeys on first use, uploads
// the identity (bound to the device key), signed prekey and last-resort
// prekey, and one batch of PrekeyBatch one-time prekeys of each kind.
func (c *Client) Publish(ctx context.Context) (*messaging.PrekeyStatus, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.loadIdentity(); err != nil {
		return nil, err
	}
	return c.publish(ctx)
}

func (c *Client) publish(ctx context.Context) (*messaging.PrekeyStatus, error) {
	req, err := c.publishRequest()
	if err != nil {
		return nil, err
	}
	var st messaging.PrekeyStatus
	if err := c.do(ctx, http.MethodPut, "/v1/prekeys", req, &st); err != nil {
		return nil, fmt.Errorf("messaging/client: publish: %w", err)
	}
	return c.topUp(ctx, &st)
}

// topUp uploads one-time prekeys of each kind that is below
// messaging.LowPrekeys, up to Options.PrekeyBatch more and never past
// messaging.MaxStoredPrekeys. Called with c.mu held.
func (c *Client) topUp(ctx context.Context, st *messaging.PrekeyStatus) (*messaging.PrekeyStatus, error) {
	want := func(have int) int {
		if have >= messaging.LowPrekeys {
			return 0
		}
		return min(c.batch, messaging.MaxStoredPrekeys-have)
	}
	n, m := want(st.OneTimePrekeys), want(st.PQPrekeys)
	if n+m == 0 {
		return st, nil
	}
	batch, err := c.newBatch(n, m)
	if err != nil {
		return nil, err
	}
	var out messaging.PrekeyStatus
	if err := c.do(ctx, http.MethodPost, "/v1/prekeys/one-time", batch, &out); err != nil {
		return nil, fmt.Errorf("messaging/client: upload one-time prekeys: %w", err)
	}
	return &out, nil
}

// Replenish asks the directory how many one-time prekeys are left and
// uploads more when it says they run low; a device that has not published
// yet publishes. Call it at start and after receiving first messages.
func (c *Client) Replenish(ctx context.Context) (*messaging.PrekeyStatus, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	if !st.Published && !st.Low {
		return st, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	created, err := c.loadIdentity()
	if err != nil {
		return nil, err
	}
	// A store that lost its identity (a reinstalled device) publishes anew:
	// keys signed by the new identity would not match the published one.
	if !st.Published || created {
		return c.publish(ctx)
	}
	return c.topUp(ctx, st)
}

// Identity returns this device's public E2E identity, creating it on first
// use (it is published by Publish).
func (c *Client) Identity() (keys.IdentityPublic, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.loadIdentity(); err != nil {
		return keys.IdentityPublic{}, err
	}
	return c.idKey.Public(), nil
}

// RotateSignedPrekey replaces the published signed prekey and last-resort
// ML-KEM prekey with new ones under the same identity; unused one-time
// prekeys stay published. The old private keys are kept, so first messages
// sent to the old bundle still decrypt. Rotate periodically (PrekeyStatus
// UpdatedAt says when the keys were last published).
func (c *Client) RotateSignedPrekey(ctx context.Context) (*messaging.PrekeyStatus, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.loadIdentity(); err != nil {
		return nil, err
	}
	next := *c.idMeta
	next.SignedPrekey++
	next.LastResort, next.NextPQ = next.NextPQ, next.NextPQ+1
	spk, err := keys.GenerateSignedPrekey(c.rand, next.SignedPrekey)
	if err != nil {
		return nil, err
	}
	lr, err := keys.GeneratePQPrekey(c.rand, next.LastResort, true)
	if err != nil {
		return nil, err
	}
	if err := c.putKey(nameSPK(spk.ID()), spk); err != nil {
		return nil, err
	}
	if err := c.putKey(namePQ(lr.ID()), lr); err != nil {
		return nil, err
	}
	if err := c.putJSON(nameMeta, &next); err != nil {
		return nil, err
	}
	*c.idMeta = next
	return c.publish(ctx)
}
