package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/identity/ca"
	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/keys/transparency"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/kind"
)

// Conversations. Send encrypts a typed message once for every device of
// the conversation, the sender's own other devices included, and stores
// it through POST /v1/messages (or Stream.Send). The SDK does not need to
// know the devices beforehand: the server answers a wrong set with 409
// stale-devices, naming the current devices and their accounts; the SDK
// claims bundles for the new ones, drops the gone ones and retries with
// the same client id, by itself.
//
// Inside the encryption every envelope carries a content record: the
// message, the conversation it belongs to and how the sender addressed
// it, and — when an agent speaks for an organisation — the agent device's
// membership certificate with the organisation's certificate. The
// receiver recomputes the conversation from the sender's verified account
// and the addressing, so the server cannot move a message into another
// conversation, and checks the membership chain, so an office's answer is
// known to come from the office.

// Peer is the other side of a conversation: an account (direct), an
// organisation (a citizen writing to an office's shared inbox), an
// organisation and a citizen account (an agent answering as the
// organisation), or a group.
type Peer struct {
	AccountID string
	OrgID     string
	GroupID   string
}

func (p Peer) sendTo() messaging.SendTo {
	return messaging.SendTo{AccountID: p.AccountID, OrgID: p.OrgID, GroupID: p.GroupID}
}

func (p Peer) String() string {
	switch {
	case p.GroupID != "":
		return "group " + p.GroupID
	case p.OrgID != "" && p.AccountID != "":
		return "organisation " + p.OrgID + " to " + p.AccountID
	case p.OrgID != "":
		return "organisation " + p.OrgID
	default:
		return "account " + p.AccountID
	}
}

// conversationOf is the conversation a message from senderAccount,
// addressed to, belongs to — the server derives the same.
func conversationOf(senderAccount string, to messaging.SendTo) (string, error) {
	switch {
	case to.GroupID != "" && to.AccountID == "" && to.OrgID == "":
		if !messaging.ValidGroupID(to.GroupID) {
			return "", errors.New("bad group id")
		}
		return to.GroupID, nil
	case to.GroupID != "":
		return "", errors.New("group_id with account_id or org_id")
	case to.OrgID != "" && to.AccountID != "":
		return messaging.OrgConversation(to.OrgID, to.AccountID), nil
	case to.OrgID != "":
		return messaging.OrgConversation(to.OrgID, senderAccount), nil
	case to.AccountID != "" && to.AccountID != senderAccount:
		return messaging.DirectConversation(senderAccount, to.AccountID), nil
	default:
		return "", errors.New("no recipient")
	}
}

// ConversationID returns the id of the conversation with p, as the server
// and every other member derive it.
func (c *Client) ConversationID(p Peer) (string, error) {
	return conversationOf(c.account, p.sendTo())
}

// content is the plaintext of every envelope the SDK sends.
type content struct {
	V            int              `json:"v"`
	Conversation string           `json:"conv"`
	To           messaging.SendTo `json:"to"`
	Org          *orgProof        `json:"org,omitempty"`
	Message      json.RawMessage  `json:"msg"`
}

// orgProof is what lets a receiver check that an agent's device speaks
// for the organisation: its membership certificate and the organisation's
// certificate, which chains to the deployment CA (both DER).
type orgProof struct {
	Membership  []byte `json:"membership"`
	Certificate []byte `json:"org_certificate"`
	// Log proves the membership's entry in the transparency log, as the
	// directory gave it to the agent; the receiver checks it.
	Log *transparency.Attachment `json:"log,omitempty"`
}

const contentVersion = 1

// deviceSet is what the SDK last learnt about a conversation's devices.
type deviceSet struct {
	accounts map[string]string // device → account
}

// conversations caches device sets and organisation proofs per client.
type conversations struct {
	mu      sync.Mutex
	devices map[string]*deviceSet // by conversation id
	proofs  map[string]*orgProof  // by organisation id
	agents  map[string]*agentSet  // by organisation id
}

// ErrSendFailed wraps what stopped Send from storing a message.
var ErrSendFailed = errors.New("messaging/client: send failed")

// maxSendAttempts bounds the stale-devices round trips of one Send: a
// device list that changes between every attempt is not worth chasing.
const maxSendAttempts = 4

// Send encrypts m for every device of the conversation with to and stores
// it, retrying by itself while the device list changes. The message id
// makes the send idempotent: sending the same message again stores it
// once.
func (c *Client) Send(ctx context.Context, to Peer, m *kind.Message) (*messaging.SendResponse, error) {
	return c.send(ctx, to, m, c.postSend)
}

// sendFunc stores one attempt: an accepted answer, or a problem.
type sendFunc func(ctx context.Context, req *messaging.SendRequest) (*messaging.SendResponse, *sendProblem, error)

// sendProblem is a refused send with the members the SDK acts on.
type sendProblem struct {
	Status   int               `json:"status"`
	Type     string            `json:"type"`
	Title    string            `json:"title"`
	Detail   string            `json:"detail"`
	Devices  []string          `json:"devices"`
	Accounts map[string]string `json:"accounts"`
	// RetryAfter is the seconds a refused send is advised to wait
	// (overloaded, rate-limited).
	RetryAfter int `json:"retry_after"`
}

func (p *sendProblem) err() error {
	return &idclient.Problem{Type: p.Type, Title: p.Title, Status: p.Status, Detail: p.Detail}
}

func (c *Client) send(ctx context.Context, to Peer, m *kind.Message, post sendFunc) (*messaging.SendResponse, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSendFailed, err)
	}
	raw, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	// An internal note goes to the organisation's agents only, never to a
	// citizen, and proves that its writer is one of them.
	internal := m.Kind == kind.CaseNote
	if internal && (to.OrgID == "" || to.AccountID != "" || to.GroupID != "") {
		return nil, fmt.Errorf("%w: a case note goes to an organisation's agents alone, not to %s", ErrSendFailed, to)
	}
	// A verified name goes only where the citizen consented
	// (verifiedname.go), never as an ordinary message.
	if m.Kind == kind.VerifiedName {
		return nil, fmt.Errorf("%w: a verified name is sent with ShareVerifiedName, after the citizen's consent", ErrSendFailed)
	}
	if m.Kind != kind.Profile && m.Kind != kind.Receipt {
		// The people of a conversation learn this account's name before
		// its first message (profile.go). A profile that cannot go out
		// now goes with the next message.
		c.shareProfile(ctx, to, post, false)
		// So does an organisation the verified name, if the citizen
		// consented and this one has not gone there yet.
		if to.OrgID != "" && to.AccountID == "" && to.GroupID == "" && !internal {
			c.shareVerifiedName(ctx, to.OrgID, post, false)
		}
	}
	return c.sendRaw(ctx, to, m.ID, m.Class(), raw, internal, post)
}

// sendRaw encrypts the encoded message raw for every device of the
// conversation with to and stores it; id makes the send idempotent. An
// agent answering as its organisation proves its membership; so does one
// writing to its colleagues when internal is set.
func (c *Client) sendRaw(ctx context.Context, to Peer, id string, class kind.Class, raw []byte, internal bool, post sendFunc) (*messaging.SendResponse, error) {
	conv, err := c.ConversationID(to)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrSendFailed, to, err)
	}
	ct := content{V: contentVersion, Conversation: conv, To: to.sendTo(), Message: raw}
	if to.OrgID != "" && (to.AccountID != "" || internal) {
		if ct.Org, err = c.ownOrgProof(ctx, to.OrgID); err != nil {
			return nil, err
		}
	}
	plaintext, err := json.Marshal(ct)
	if err != nil {
		return nil, err
	}
	req := messaging.SendRequest{To: to.sendTo(), ClientID: SendClientID(id), Class: string(class)}

	// The first attempt addresses the devices of the last accepted send;
	// one of them that no longer passes (a member who left) is dropped,
	// not refused: the list is the client's own. Every later list is the
	// server's, and every device on it must pass.
	set := c.cachedDevices(conv)
	for attempt := 0; ; attempt++ {
		if err := c.ensureSessions(ctx, to, set, attempt > 0); err != nil {
			return nil, err
		}
		req.Envelopes = req.Envelopes[:0]
		for _, dev := range sortedDevices(set) {
			em, err := c.Encrypt(dev, plaintext)
			if err != nil {
				return nil, err
			}
			b, err := em.MarshalBinary()
			if err != nil {
				return nil, err
			}
			req.Envelopes = append(req.Envelopes, messaging.SendEnvelope{DeviceID: dev, Ciphertext: base64.StdEncoding.EncodeToString(b)})
		}
		resp, prob, err := postAdmitted(ctx, post, &req)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSendFailed, err)
		}
		if prob == nil {
			c.rememberDevices(conv, set)
			return resp, nil
		}
		if prob.Type != string(messaging.TypeStaleDevices) || attempt+1 >= maxSendAttempts {
			return nil, fmt.Errorf("%w: %w", ErrSendFailed, prob.err())
		}
		set = &deviceSet{accounts: map[string]string{}}
		for _, d := range prob.Devices {
			set.accounts[d] = prob.Accounts[d]
		}
	}
}

// A server whose group commit is full refuses a send with 503 overloaded
// and the seconds to wait (messaging.TypeOverloaded); nothing of it was
// stored. Send waits that long and a random part of it more (up to half),
// so that the senders refused together do not come back together, at
// most MaxOverloadWait, and sends the same request again — the same
// client_id and ciphertexts, so a send can never be stored twice — at
// most MaxOverloadRetries times, or until its context ends.
const (
	MaxOverloadWait    = 30 * time.Second
	MaxOverloadRetries = 20
)

// postAdmitted is post, again after each overloaded refusal (see
// MaxOverloadRetries).
func postAdmitted(ctx context.Context, post sendFunc, req *messaging.SendRequest) (*messaging.SendResponse, *sendProblem, error) {
	for retry := 0; ; retry++ {
		resp, prob, err := post(ctx, req)
		if err != nil || prob == nil || prob.Type != string(messaging.TypeOverloaded) || retry >= MaxOverloadRetries {
			return resp, prob, err
		}
		t := time.NewTimer(overloadWait(prob.RetryAfter))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, nil, ctx.Err()
		}
	}
}

// overloadWait is how long to wait after a refusal that advised secs
// seconds: that, at least a second, plus up to half of it at random,
// at most MaxOverloadWait.
func overloadWait(secs int) time.Duration {
	base := min(time.Duration(max(secs, 1))*time.Second, MaxOverloadWait)
	return min(base+rand.N(base/2+1), MaxOverloadWait)
}

func sortedDevices(s *deviceSet) []string {
	out := make([]string, 0, len(s.accounts))
	for d := range s.accounts {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

func (c *Client) cachedDevices(conv string) *deviceSet {
	c.convs.mu.Lock()
	defer c.convs.mu.Unlock()
	if s := c.convs.devices[conv]; s != nil {
		cp := &deviceSet{accounts: make(map[string]string, len(s.accounts))}
		for k, v := range s.accounts {
			cp.accounts[k] = v
		}
		return cp
	}
	return &deviceSet{accounts: map[string]string{}}
}

func (c *Client) rememberDevices(conv string, s *deviceSet) {
	c.convs.mu.Lock()
	defer c.convs.mu.Unlock()
	if c.convs.devices == nil {
		c.convs.devices = map[string]*deviceSet{}
	}
	c.convs.devices[conv] = s
}

// ensureSessions checks every device of set against the conversation
// (see admit) and has a session with each once they all pass. Devices
// without a session get their bundle claimed and verified first: devices
// the server says are of this account or of the addressed citizen from
// that account, the other devices of a conversation with an organisation
// as its agents (membership checked), anything else from the account the
// server names, which the bundle's certificate must name too. A device
// that fails stops the send with a *RecipientError before any session is
// started or anything is encrypted; if strict is false such a device is
// dropped from set instead.
func (c *Client) ensureSessions(ctx context.Context, to Peer, set *deviceSet, strict bool) error {
	type claimKey struct{ account, org string }
	need := map[claimKey][]string{}
	found := map[string]*recipient{}
	for _, dev := range sortedDevices(set) {
		acct, err := c.sessionAccount(dev)
		if err != nil {
			return err
		}
		if acct != "" {
			found[dev] = &recipient{device: dev, account: acct}
			continue
		}
		hint := set.accounts[dev]
		var key claimKey
		switch {
		case hint == c.account || hint != "" && hint == to.AccountID || to.OrgID == "" && hint != "":
			key.account = hint
		case to.OrgID != "":
			key.org = to.OrgID
		default:
			return c.dropOrRefuse(set, strict, &RecipientError{Peer: to, DeviceID: dev, Reason: "the server named it without its account"})
		}
		need[key] = append(need[key], dev)
	}
	bundles := map[string]*Bundle{}
	for key, devs := range need {
		claim, err := c.claim(ctx, messaging.ClaimRequest{AccountID: key.account, OrgID: key.org, Devices: devs})
		if key.account != "" && idclient.IsProblem(err, string(messaging.TypeUnknownRecipient)) {
			// The account's last device went since the server named
			// these: none of them gets keys, as below.
			claim, err = &Claim{}, nil
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrSendFailed, err)
		}
		for _, r := range claim.Refused {
			if slices.Contains(devs, r.DeviceID) {
				if err := c.dropOrRefuse(set, strict, &RecipientError{Peer: to, DeviceID: r.DeviceID,
					Reason: "its bundle did not verify", Err: r.Err}); err != nil {
					return err
				}
			}
		}
		for _, b := range claim.Bundles {
			if slices.Contains(devs, b.Device.DeviceID) {
				bundles[b.Device.DeviceID] = b
				found[b.Device.DeviceID] = &recipient{device: b.Device.DeviceID, account: b.Device.AccountID, membership: b.Membership}
			}
		}
		for _, d := range devs {
			if _, still := set.accounts[d]; still && found[d] == nil {
				where := "account " + key.account
				if key.org != "" {
					where = "organisation " + key.org
				}
				if err := c.dropOrRefuse(set, strict, &RecipientError{Peer: to, DeviceID: d,
					Reason: "the server gave no keys for it as a device of " + where}); err != nil {
					return err
				}
			}
		}
	}
	for _, dev := range sortedDevices(set) {
		r := found[dev]
		if err := c.admit(ctx, to, *r); err != nil {
			var re *RecipientError
			if !errors.As(err, &re) {
				return fmt.Errorf("%w: %w", ErrSendFailed, err)
			}
			if err := c.dropOrRefuse(set, strict, re); err != nil {
				return err
			}
			delete(bundles, dev)
		}
	}
	// Every device left has passed: only now are sessions started.
	pinned := map[string]string{}
	for _, dev := range sortedDevices(set) {
		if b := bundles[dev]; b != nil {
			if err := c.observeKey(b.Device.AccountID, dev, b.Prekeys.Identity); err != nil {
				return err
			}
			if err := c.StartSession(b); err != nil {
				return err
			}
		}
		pinned[dev] = found[dev].account
	}
	if err := c.pin(pinned); err != nil {
		return err
	}
	// A verified contact whose key changed, or who has a device the user
	// did not verify, gets nothing until verified again.
	return c.checkVerified(set)
}

// dropOrRefuse drops the device of e from set when strict is false, and
// otherwise returns e as the reason the send failed.
func (c *Client) dropOrRefuse(set *deviceSet, strict bool, e *RecipientError) error {
	if !strict {
		delete(set.accounts, e.DeviceID)
		return nil
	}
	return fmt.Errorf("%w: %w", ErrSendFailed, e)
}

// postSend stores one attempt over HTTP.
func (c *Client) postSend(ctx context.Context, req *messaging.SendRequest) (*messaging.SendResponse, *sendProblem, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/messages", bytes.NewReader(b))
	if err != nil {
		return nil, nil, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json, application/problem+json")
	// A send is safe to repeat (its client_id), and saying so lets the
	// transport send it again by itself when a kept-alive connection
	// closes under it before the answer (messaging.IdempotencyKeyHeader).
	hreq.Header.Set(messaging.IdempotencyKeyHeader, req.ClientID)
	if tok := *c.token.Load(); tok != "" {
		hreq.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.hc.Do(hreq)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, nil, err
	}
	if len(body) > MaxResponseBytes {
		return nil, nil, fmt.Errorf("messaging/client: send: answer over %d bytes", MaxResponseBytes)
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch {
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated:
		if mt != "application/json" {
			return nil, nil, fmt.Errorf("messaging/client: send: content type %q", mt)
		}
		var out messaging.SendResponse
		if err := decodeStrict(body, &out); err != nil {
			return nil, nil, err
		}
		return &out, nil, nil
	case mt == "application/problem+json":
		var p sendProblem
		if err := json.Unmarshal(body, &p); err != nil {
			return nil, nil, fmt.Errorf("messaging/client: send: bad problem: %w", err)
		}
		p.Status = resp.StatusCode
		return nil, &p, nil
	default:
		return nil, nil, problemOf(resp, body)
	}
}

// ownOrgProof returns this device's membership certificate for org and
// the organisation's certificate, from the directory, checked against the
// CA before it is used.
func (c *Client) ownOrgProof(ctx context.Context, org string) (*orgProof, error) {
	c.convs.mu.Lock()
	p := c.convs.proofs[org]
	c.convs.mu.Unlock()
	if p != nil {
		return p, nil
	}
	var d identity.DirectoryOrg
	if err := c.do(ctx, http.MethodGet, "/v1/directory/orgs/"+url.PathEscape(org), nil, &d); err != nil {
		return nil, fmt.Errorf("%w: organisation %s: %w", ErrSendFailed, org, err)
	}
	orgDER := derOf(d.Certificate)
	for _, m := range d.Members {
		for _, dev := range m.Devices {
			if dev.DeviceID != c.device {
				continue
			}
			p = &orgProof{Membership: derOf(dev.MembershipCertificate), Certificate: orgDER, Log: dev.Log}
			m, err := c.checkOrgProof(p, c.account, c.device)
			if err != nil {
				return nil, err
			}
			if err := c.logged(ctx, p.Log, membershipEntry(*m), p.Membership); err != nil {
				return nil, fmt.Errorf("%w: this device's membership of %s: %w", ErrSendFailed, org, err)
			}
			c.convs.mu.Lock()
			if c.convs.proofs == nil {
				c.convs.proofs = map[string]*orgProof{}
			}
			c.convs.proofs[org] = p
			c.convs.mu.Unlock()
			return p, nil
		}
	}
	return nil, fmt.Errorf("%w: this device is not an agent device of organisation %s", ErrSendFailed, org)
}

// checkOrgProof verifies that p makes device (of account) an agent of an
// organisation, now, chained to the CA.
func (c *Client) checkOrgProof(p *orgProof, account, device string) (*ca.Membership, error) {
	if p == nil || p.Membership == nil || p.Certificate == nil {
		return nil, untrusted(device, "incomplete organisation proof")
	}
	m, err := ca.VerifyMembership(p.Membership, p.Certificate, c.roots, c.now())
	if err != nil {
		return nil, untrusted(device, "membership: %v", err)
	}
	if m.DeviceID != device || m.AccountID != account {
		return nil, untrusted(device, "membership names %s/%s", m.AccountID, m.DeviceID)
	}
	return &m, nil
}
