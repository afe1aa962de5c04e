package client

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/internal/apiclient"
	"github.com/kanal-server/kanal/keys"
	"github.com/kanal-server/kanal/keys/transparency"
	"github.com/kanal-server/kanal/messaging"
)

// Errors callers branch on. Server refusals are *identity/client.Problem
// values (branch on their Type, e.g. messaging.TypeBadBinding).
var (
	ErrUntrusted  = errors.New("messaging/client: bundle or sender not trusted")
	ErrNoSession  = errors.New("messaging/client: no session with this device")
	ErrBadMessage = errors.New("messaging/client: malformed message")
	ErrUnknownKey = errors.New("messaging/client: message names a prekey this device does not hold")
)

// Options configures a Client. BaseURL, AccountID, DeviceID, DeviceKey,
// DeviceCertificate, CA and Store are required.
type Options struct {
	BaseURL    string       // "https://kanal.example.de"
	HTTPClient *http.Client // nil: a client with DefaultTimeout
	Token      string       // session bearer token; SetToken replaces it

	AccountID string
	DeviceID  string
	// DeviceKey is the device's PKI key (ECDSA P-256 or Ed25519); it signs
	// the binding of the E2E identity key to the device.
	DeviceKey crypto.Signer
	// DeviceCertificate is this device's certificate (PEM or DER), sent
	// with first messages so receivers can check the sender offline.
	DeviceCertificate []byte
	// CA is the deployment CA every peer certificate must chain to. Take
	// it from enrolment or configuration, not from a claim response.
	CA *x509.Certificate
	// Intermediates are the deployment's issuing intermediates when its
	// root is kept offline (enrolment's "intermediates", current first);
	// each must be signed by CA as an issuing intermediate (ca.TrustPool)
	// or New fails.
	Intermediates []*x509.Certificate

	Store Store
	// OnNewDevice, if set, is called when a contact's account (or this
	// one) shows a device this client has not met before, once the
	// account's devices are pinned: when a send addresses it or a message
	// from it arrives. It runs on the goroutine of that Send or Receive.
	OnNewDevice func(NewDevice)
	// OnKeyChange, if set, is called when a contact's device shows an
	// identity key other than the one pinned for it, or a verified contact
	// shows a new device (see VerifyContact). It runs on the goroutine of
	// the Send or Receive that met the key.
	OnKeyChange func(KeyChange)
	// OnAlert, if set, is called for each alert a Monitor poll raises,
	// on the goroutine of that poll.
	OnAlert func(Alert)

	// LogKey is the deployment's transparency log key, a note verifier
	// key ("name+hash+base64"), from the deployment's configuration like
	// CA. Empty: the key GET /v1/log/key serves on first use is pinned in
	// the Store (trust on first use). A pinned key that differs from
	// LogKey is refused.
	LogKey string
	// CheckCheckpoint, if set, is asked about every checkpoint before it
	// replaces the stored one (with the note as signed, cosignatures
	// included): an error refuses it, and whatever came with it. Witness
	// cosignature quorums plug in here.
	CheckCheckpoint func(note []byte, c transparency.Checkpoint) error
	// Witnesses are the verifier keys ("name+keyid+base64", C2SP
	// tlog-cosignature) of the witnesses whose cosignatures every
	// checkpoint must carry before it replaces the stored one:
	// WitnessQuorum of them (0: all listed), each cosigned no longer than
	// WitnessMaxAge ago (0: any age). A checkpoint without the quorum is
	// refused with transparency.ErrQuorum and the stored one kept. With
	// witnesses, UpdateLog fetches GET /v1/log/witness/checkpoint. Take
	// the keys from the deployment's published configuration, not from
	// GET /v1/log/witnesses.
	Witnesses     []string
	WitnessQuorum int
	WitnessMaxAge time.Duration

	// PrekeyBatch is how many one-time prekeys of each kind Publish and
	// Replenish upload at a time (0: PrekeyBatch; at most
	// messaging.MaxPrekeyBatch). A device that meets many new peers at
	// once — a member of a large group — uses up a batch quickly; a
	// device that must start cheaply (a test enrolling thousands) uploads
	// fewer. Once used up, sessions still start on the last-resort
	// prekey.
	PrekeyBatch int

	Now  func() time.Time // nil: time.Now
	Rand io.Reader        // nil: crypto/rand
}

// Client is one device's end-to-end state and its connection to the
// prekey directory.
type Client struct {
	// jsonFrames: the stream offers JSON frames only, as clients before
	// binary frames did (set by tests).
	jsonFrames bool
	base       string
	hc         *http.Client
	account    string
	device     string
	deviceKey  crypto.Signer
	certDER    []byte
	caCert     *x509.Certificate
	roots      *x509.CertPool
	store      Store
	now        func() time.Time
	rand       io.Reader
	id         *idclient.Client

	token atomic.Pointer[string]

	mu     sync.Mutex // serialises state changes
	idKey  keys.IdentityPrivate
	idMeta *meta
	// binding is keys.SignIdentity of idKey for this device, made on the
	// first initial message.
	binding []byte
	// sessions are the session records last read or written, parsed
	// (loadSession, putSession).
	sessions map[string]cachedSession

	statusMu sync.Mutex // guards statuses
	statuses map[string]statusEntry

	convs   conversations
	inboxMu sync.Mutex // received envelopes: decrypt, keep, forget
	groupMu sync.Mutex // group members and pinned devices in the Store
	profMu  sync.Mutex // profiles in the Store

	onNewDevice func(NewDevice)
	onKeyChange func(KeyChange)
	onAlert     func(Alert)
	monitorMu   sync.Mutex // the monitor's state in the Store
	trustMu     sync.Mutex // pinned identity keys in the Store; taken before mu, never after

	logKeyOpt       string
	checkCheckpoint func([]byte, transparency.Checkpoint) error
	witnessed       bool       // checkpoints must carry witness cosignatures
	logMu           sync.Mutex // guards logState and the log's Store names
	logState        *logState
	batch           int // one-time prekeys of each kind per upload
}

// New checks o and returns a Client. It does not contact the server.
func New(o Options) (*Client, error) {
	if o.BaseURL == "" || o.AccountID == "" || o.DeviceID == "" || o.DeviceKey == nil || o.CA == nil || o.Store == nil || len(o.DeviceCertificate) == 0 {
		return nil, errors.New("messaging/client: BaseURL, AccountID, DeviceID, DeviceKey, DeviceCertificate, CA and Store are required")
	}
	der := o.DeviceCertificate
	if b, _ := pem.Decode(der); b != nil {
		der = b.Bytes
	}
	c := &Client{base: o.BaseURL, hc: o.HTTPClient, account: o.AccountID, device: o.DeviceID, deviceKey: o.DeviceKey,
		certDER: der, caCert: o.CA, store: o.Store, now: o.Now, rand: o.Rand, onNewDevice: o.OnNewDevice, onKeyChange: o.OnKeyChange, onAlert: o.OnAlert,
		logKeyOpt: o.LogKey, checkCheckpoint: o.CheckCheckpoint}
	switch {
	case o.PrekeyBatch < 0 || o.PrekeyBatch > messaging.MaxPrekeyBatch:
		return nil, fmt.Errorf("messaging/client: PrekeyBatch must be 0..%d", messaging.MaxPrekeyBatch)
	case o.PrekeyBatch == 0:
		c.batch = PrekeyBatch
	default:
		c.batch = o.PrekeyBatch
	}
	c.token.Store(&o.Token)
	if c.hc == nil {
		c.hc = &http.Client{Timeout: DefaultTimeout}
	}
	if c.now == nil {
		c.now = time.Now
	}
	if o.LogKey != "" {
		if _, err := transparency.NewVerifier(o.LogKey); err != nil {
			return nil, fmt.Errorf("messaging/client: LogKey: %w", err)
		}
	}
	if len(o.Witnesses) > 0 || o.WitnessQuorum != 0 {
		q := o.WitnessQuorum
		if q == 0 {
			q = len(o.Witnesses)
		}
		policy, err := transparency.NewWitnessPolicy(o.Witnesses, q, o.WitnessMaxAge)
		if err != nil {
			return nil, fmt.Errorf("messaging/client: Witnesses: %w", err)
		}
		user := c.checkCheckpoint
		c.checkCheckpoint = func(msg []byte, cp transparency.Checkpoint) error {
			if _, err := policy.CheckCosigned(msg, c.now()); err != nil {
				return err
			}
			if user != nil {
				return user(msg, cp)
			}
			return nil
		}
		c.witnessed = true
	}
	roots, err := ca.TrustPool(o.CA, o.Intermediates)
	if err != nil {
		return nil, fmt.Errorf("messaging/client: %w", err)
	}
	c.roots = roots
	if len(o.Intermediates) > 0 {
		// Statuses are signed by the issuing intermediate.
		c.caCert = o.Intermediates[0]
	}
	// The own certificate must be one that peers will accept.
	di, err := ca.VerifyDevice(der, c.roots, c.now())
	if err != nil {
		return nil, fmt.Errorf("messaging/client: own device certificate: %w", err)
	}
	if di.DeviceID != o.DeviceID || di.AccountID != o.AccountID {
		return nil, fmt.Errorf("messaging/client: own device certificate names %s/%s", di.AccountID, di.DeviceID)
	}
	c.id = idclient.New(o.BaseURL, c.hc)
	return c, nil
}

// SetToken replaces the session token, for example after a refresh.
func (c *Client) SetToken(token string) {
	c.token.Store(&token)
}

// DeviceID returns the device the Client acts for.
func (c *Client) DeviceID() string { return c.device }

// do sends one request to the prekey directory and strictly decodes a 200
// answer into out. An error answer becomes an *idclient.Problem.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	return c.doStatus(ctx, method, path, in, out, http.StatusOK)
}

// doStatus is do for a route that answers success with status.
func (c *Client) doStatus(ctx context.Context, method, path string, in, out any, status int) error {
	return c.doAny(ctx, method, path, in, out, status)
}

// problemOf is the *idclient.Problem of an error answer whose body is b;
// a numeric Retry-After is kept as its "retry_after" member.
func problemOf(resp *http.Response, b []byte) error {
	p := apiclient.ProblemOf(resp, b)
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		if _, err := strconv.Atoi(ra); err == nil {
			p.Extra = map[string]json.RawMessage{"retry_after": json.RawMessage(ra)}
		}
	}
	return (*idclient.Problem)(p)
}

func decodeStrict(b []byte, v any) error {
	if err := apiclient.DecodeStrict(b, v); err != nil {
		return fmt.Errorf("messaging/client: bad answer: %w", err)
	}
	return nil
}

// Status returns what the directory holds for this device.
func (c *Client) Status(ctx context.Context) (*messaging.PrekeyStatus, error) {
	var st messaging.PrekeyStatus
	if err := c.do(ctx, http.MethodGet, "/v1/prekeys/status", nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}
