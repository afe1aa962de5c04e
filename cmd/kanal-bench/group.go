package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/kanal-server/kanal/keys"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/client"
)

// The group scenario: groups of o.groupSize members created through
// POST /v1/groups, o.groupSenders of whom send. Each sender encrypts a
// message once with its sender key (keys.SenderKey) and the server stores
// one envelope per other member's device, all with that ciphertext. The
// sender key reaches the members inside the pairwise PQXDH sessions, as
// a distribution message in one group send. The SDK's own group layer is
// not used: the bench frames sender-key envelopes itself (a leading 'S'),
// because the SDK did not offer group sends when the bench was written.

const kindDistribution = 2 // pairwise payload: a sender key distribution after the head

// senderKeys is a device's receiving sender keys, by sending device.
type senderKeys struct {
	mu sync.Mutex
	m  map[string]*keys.SenderKeyReceiver
}

func groupAD(group, senderDevice string) []byte { return []byte(group + "\x00" + senderDevice) }

// groupState is one group of the run: its members and its senders' keys.
type groupState struct {
	id      string
	members []*device
	skeys   map[string]*keys.SenderKey // sender device → its sender key
}

func (r *runner) createGroup(ctx context.Context, creator *device, members []*device) (string, error) {
	var req messaging.CreateGroupRequest
	for _, m := range members {
		if m != creator {
			req.Members = append(req.Members, messaging.GroupMemberRequest{AccountID: m.account, Role: messaging.GroupMember})
		}
	}
	body, _ := json.Marshal(&req)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, creator.base+"/v1/groups", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Authorization", "Bearer "+creator.token)
	resp, err := creator.hc.Do(hr)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("create group: %d %s", resp.StatusCode, b)
	}
	var g messaging.Group
	if err := json.Unmarshal(b, &g); err != nil {
		return "", err
	}
	// The members are invited; each accepts.
	for _, m := range members {
		if m == creator {
			continue
		}
		if err := acceptInvitation(ctx, m, g.GroupID); err != nil {
			return "", err
		}
	}
	return g.GroupID, nil
}

// acceptInvitation makes d's account a member of the group it is invited to.
func acceptInvitation(ctx context.Context, d *device, group string) error {
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+"/v1/groups/"+group+"/invitation/accept", nil)
	if err != nil {
		return err
	}
	hr.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := d.hc.Do(hr)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("accept invitation: %d %s", resp.StatusCode, b)
	}
	return nil
}

func (r *runner) group(ctx context.Context) error {
	size, nsend := r.o.groupSize, r.o.groupSenders
	groups := r.o.devices / size
	ds, err := r.provision(ctx, groups*size, "member", true)
	if err != nil {
		return err
	}
	for _, d := range ds {
		d.skeys = &senderKeys{m: map[string]*keys.SenderKeyReceiver{}}
	}
	if err := r.connectAll(ctx, ds); err != nil {
		return err
	}
	gs := make([]*groupState, groups)
	for g := range groups {
		members := ds[g*size : (g+1)*size]
		id, err := r.createGroup(ctx, members[0], members)
		if err != nil {
			return err
		}
		gs[g] = &groupState{id: id, members: members, skeys: map[string]*keys.SenderKey{}}
	}
	// Pairwise sessions between each sender and every other member: the
	// member with the higher index claims the other's bundle and writes
	// first, so no account claims more than nsend times (the claim limit
	// is per minute) and no pair starts two sessions.
	type pair struct{ claimer, claimed *device }
	var pairs []pair
	for _, g := range gs {
		for s := range nsend {
			for m := s + 1; m < size; m++ {
				pairs = append(pairs, pair{g.members[m], g.members[s]})
			}
		}
	}
	before := r.hellos.Load()
	err = parallel(ctx, len(pairs), 16, func(i int) error {
		p := pairs[i]
		claim, err := p.claimer.sdk.ClaimAccount(ctx, p.claimed.account)
		if err != nil {
			return err
		}
		if len(claim.Bundles) != 1 {
			return fmt.Errorf("claim: %d bundles", len(claim.Bundles))
		}
		if err := p.claimer.sdk.StartSession(claim.Bundles[0]); err != nil {
			return err
		}
		return r.sendOnce(ctx, p.claimer, messaging.SendTo{AccountID: p.claimed.account}, []string{p.claimed.id},
			payload(kindHello, time.Now(), r.o.size))
	})
	if err != nil {
		return fmt.Errorf("sessions: %w", err)
	}
	if err := r.waitHellos(ctx, before+uint64(len(pairs))); err != nil {
		return err
	}
	// Each sender distributes its sender key to the group, pairwise
	// encrypted, in one group send.
	before = r.distributions.Load()
	var senders []sender
	for _, g := range gs {
		for s := range nsend {
			sd := g.members[s]
			sk, err := keys.NewSenderKey(nil)
			if err != nil {
				return err
			}
			g.skeys[sd.id] = sk
			dist, err := sk.Distribution().MarshalBinary()
			if err != nil {
				return err
			}
			var recips []string
			for _, m := range g.members {
				if m != sd {
					recips = append(recips, m.id)
				}
			}
			pt := append(payload(kindDistribution, time.Now(), payloadHead), append([]byte(g.id+"\x00"), dist...)...)
			if err := r.sendOnce(ctx, sd, messaging.SendTo{GroupID: g.id}, recips, pt); err != nil {
				return fmt.Errorf("distribute sender key: %w", err)
			}
			senders = append(senders, sender{d: sd, to: messaging.SendTo{GroupID: g.id}, recips: recips, skey: sk})
		}
	}
	want := before + uint64(groups*nsend*(size-1))
	deadline := time.Now().Add(60 * time.Second)
	for r.distributions.Load() < want {
		if time.Now().After(deadline) {
			return fmt.Errorf("sender keys: %d of %d distributions arrived (errors %v)", r.distributions.Load()-before, want-before, r.errs.snapshot())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r.measure(ctx, senders)
}

// sealGroup encrypts pt once with the sender key and addresses the same
// ciphertext to every recipient device.
func (d *device) sealGroup(s sender, pt []byte) (*outgoing, error) {
	ct, err := s.skey.Encrypt(pt, groupAD(s.to.GroupID, d.id))
	if err != nil {
		return nil, err
	}
	wire := append([]byte{'S'}, ct...)
	req := messaging.SendRequest{To: s.to, Class: "message",
		ClientID: client.SendClientID(client.NewMessageID())}
	for _, rcpt := range s.recips {
		req.Envelopes = append(req.Envelopes, messaging.SendEnvelope{DeviceID: rcpt, Data: wire})
	}
	return &outgoing{req: req}, nil
}

// openGroup decrypts a sender-key envelope (after its 'S').
func (d *device) openGroup(conversation, sender string, ct []byte) ([]byte, error) {
	d.skeys.mu.Lock()
	defer d.skeys.mu.Unlock()
	rcv := d.skeys.m[sender]
	if rcv == nil {
		return nil, fmt.Errorf("no sender key from %s", sender)
	}
	return rcv.Decrypt(ct, groupAD(conversation, sender))
}

// acceptDistribution keeps a sender key that arrived in a pairwise message.
func (d *device) acceptDistribution(sender string, body []byte) error {
	i := bytes.IndexByte(body, 0)
	if i < 0 {
		return fmt.Errorf("distribution without group")
	}
	var dist keys.SenderKeyDistribution
	if err := dist.UnmarshalBinary(body[i+1:]); err != nil {
		return err
	}
	rcv, err := keys.NewSenderKeyReceiver(&dist)
	if err != nil {
		return err
	}
	d.skeys.mu.Lock()
	d.skeys.m[sender] = rcv
	d.skeys.mu.Unlock()
	return nil
}
