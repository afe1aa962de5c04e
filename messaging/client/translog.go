package client

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/identity/ca"
	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/identity/translog"
	"github.com/kanal-server/kanal/internal/apiclient"
	"github.com/kanal-server/kanal/keys/transparency"
)

// The transparency log, as a client checks it (docs/transparency.md).
//
// The client pins the deployment's log key (Options.LogKey, or the key
// GET /v1/log/key gave on first use) and the last checkpoint it accepted,
// both in its Store. Every bundle claim, device list and membership it
// accepts must come with an inclusion proof of its log entry against a
// checkpoint signed by the pinned key and consistent with the stored one;
// a newer checkpoint is stored once its consistency proof from the stored
// one verifies. Anything else is refused, and the stored state stays as
// it was. What the log adds: a binding the server shows Alice is in the
// one public history that Bob's own devices (and anyone) can read, so a
// device the server mints for Bob is either refused here or seen there.

// Errors of the log checks. A refused bundle, sender or membership wraps
// ErrUntrusted and one of these.
var (
	// ErrNotLogged: the binding came without a log entry, or with the
	// entry of another binding.
	ErrNotLogged = errors.New("messaging/client: not in the transparency log")
	// ErrLog: a checkpoint or proof that does not verify, or a checkpoint
	// that is not consistent with the stored one. It also wraps
	// keys/transparency's ErrSignature, ErrInclusion or ErrConsistency.
	ErrLog = errors.New("messaging/client: transparency log check failed")
	// ErrSaltChanged: a version 2 entry came with another salt for an
	// account than the one pinned for it. An account's salt never changes
	// while the account exists: a server that shows another one commits
	// to the account in a place its own devices' monitor does not look.
	// It wraps ErrNotLogged.
	ErrSaltChanged = fmt.Errorf("%w: the account's log salt changed", ErrNotLogged)
)

// Store names of the log state.
const (
	nameLogKey        = "log/key"
	nameLogCheckpoint = "log/checkpoint"
	nameLogSalt       = "log/salt/" // + account: the account's pinned salt
)

// logState is the pinned log key and the stored checkpoint, loaded from
// the Store on first use. Guarded by Client.logMu.
type logState struct {
	vkey     string
	verifier note.Verifier
	note     []byte                  // the stored checkpoint as signed; nil when none yet
	cp       transparency.Checkpoint // what it says
}

func logErr(err error) error { return fmt.Errorf("%w: %w", ErrLog, err) }

// LogKey returns the pinned verifier key of the deployment's log
// ("name+hash+base64", note's format): Options.LogKey, or the key pinned
// in the Store, or, on first use without either, the one the server
// serves at GET /v1/log/key, which is then pinned.
func (c *Client) LogKey(ctx context.Context) (string, error) {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	st, err := c.loadLog(ctx)
	if err != nil {
		return "", err
	}
	return st.vkey, nil
}

// LogCheckpoint returns the stored checkpoint: the signed note and what it
// says. Before the client has accepted any, it returns ErrNotFound.
func (c *Client) LogCheckpoint(ctx context.Context) ([]byte, transparency.Checkpoint, error) {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	st, err := c.loadLog(ctx)
	if err != nil {
		return nil, transparency.Checkpoint{}, err
	}
	if st.note == nil {
		return nil, transparency.Checkpoint{}, ErrNotFound
	}
	return bytes.Clone(st.note), st.cp, nil
}

// loadLog returns the log state, loading or pinning the key on first use.
// Called with c.logMu held.
func (c *Client) loadLog(ctx context.Context) (*logState, error) {
	if c.logState != nil {
		return c.logState, nil
	}
	st := &logState{}
	stored, err := c.store.Get(nameLogKey)
	pin := false
	switch {
	case errors.Is(err, ErrNotFound):
		pin = true
		st.vkey = c.logKeyOpt
		if st.vkey == "" {
			if st.vkey, err = c.fetchLogKey(ctx); err != nil {
				return nil, err
			}
		}
	case err != nil:
		return nil, err
	default:
		st.vkey = string(stored)
		if c.logKeyOpt != "" && c.logKeyOpt != st.vkey {
			return nil, fmt.Errorf("%w: the configured log key %q is not the pinned one %q", ErrLog, c.logKeyOpt, st.vkey)
		}
	}
	if st.verifier, err = transparency.NewVerifier(st.vkey); err != nil {
		return nil, logErr(err)
	}
	if pin {
		if err := c.store.Put(nameLogKey, []byte(st.vkey)); err != nil {
			return nil, err
		}
	}
	msg, err := c.store.Get(nameLogCheckpoint)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return nil, err
	default:
		cp, _, err := transparency.Open(msg, st.verifier)
		if err != nil {
			return nil, fmt.Errorf("%w: the stored checkpoint: %w", ErrLog, err)
		}
		st.note, st.cp = msg, cp
	}
	c.logState = st
	return st, nil
}

// fetchLogKey asks the server for its log key, for a client that was given
// none: trust on first use, pinned from then on.
func (c *Client) fetchLogKey(ctx context.Context) (string, error) {
	b, err := c.getText(ctx, "/v1/log/key")
	if err != nil {
		return "", fmt.Errorf("messaging/client: log key: %w", err)
	}
	vkey := strings.TrimSuffix(string(b), "\n")
	if _, err := note.NewVerifier(vkey); err != nil || strings.ContainsAny(vkey, "\n ") {
		return "", fmt.Errorf("%w: the server's log key %q is not a note verifier key", ErrLog, vkey)
	}
	return vkey, nil
}

// getText GETs a text/plain answer of the log (key, checkpoint).
func (c *Client) getText(ctx context.Context, path string) ([]byte, error) {
	if err := apiclient.CheckBase(c.base); err != nil {
		return nil, fmt.Errorf("messaging/client: %w", err)
	}
	req, err := apiclient.NewRequest(ctx, http.MethodGet, c.base+path, nil, "")
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := apiclient.ReadCapped(resp.Body, transparency.MaxCheckpointBytes)
	if err != nil {
		return nil, fmt.Errorf("messaging/client: GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, problemOf(resp, b)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/plain" {
		return nil, fmt.Errorf("messaging/client: GET %s: content type %q", path, resp.Header.Get("Content-Type"))
	}
	return b, nil
}

// consistencyProof fetches the proof that the tree of size n extends that
// of size m.
func (c *Client) consistencyProof(ctx context.Context, m, n int64) ([]tlog.Hash, error) {
	var p transparency.ConsistencyProof
	path := "/v1/log/proof/consistency?old=" + strconv.FormatInt(m, 10) + "&new=" + strconv.FormatInt(n, 10)
	if err := c.do(ctx, http.MethodGet, path, nil, &p); err != nil {
		return nil, fmt.Errorf("messaging/client: consistency proof %d to %d: %w", m, n, err)
	}
	if p.Old != m || p.New != n {
		return nil, logErr(fmt.Errorf("%w: asked for %d to %d, got %d to %d", transparency.ErrConsistency, m, n, p.Old, p.New))
	}
	hs, err := transparency.DecodeHashes(p.Hashes)
	if err != nil {
		return nil, logErr(err)
	}
	return hs, nil
}

// AdvanceLog accepts checkpoint, a signed checkpoint note newer than the
// stored one, if it is signed by the pinned log key, passes
// Options.CheckCheckpoint and proof shows it consistent with the stored
// checkpoint; it is stored then. Without a stored checkpoint it is the
// first one, accepted on its signature (and the hook). A checkpoint equal
// to the stored one is accepted without a proof; an older or different
// one of the same size is refused. On any refusal the stored state stays.
func (c *Client) AdvanceLog(ctx context.Context, checkpoint []byte, proof []tlog.Hash) (transparency.Checkpoint, error) {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	st, err := c.loadLog(ctx)
	if err != nil {
		return transparency.Checkpoint{}, err
	}
	cp, _, err := transparency.Open(checkpoint, st.verifier)
	if err != nil {
		return cp, logErr(err)
	}
	if st.note != nil && cp.Size < st.cp.Size {
		return cp, logErr(fmt.Errorf("%w: size %d is older than the stored %d", transparency.ErrConsistency, cp.Size, st.cp.Size))
	}
	return cp, c.accept(ctx, st, checkpoint, cp, func(context.Context, int64, int64) ([]tlog.Hash, error) { return proof, nil })
}

// UpdateLog fetches the newest checkpoint (with Options.Witnesses, the
// newest the witnesses cosigned) and the proof that it extends the stored
// one, checks both and stores the checkpoint. It returns the checkpoint
// now stored.
func (c *Client) UpdateLog(ctx context.Context) (transparency.Checkpoint, error) {
	path := "/v1/log/checkpoint"
	if c.witnessed {
		path = "/v1/log/witness/checkpoint"
	}
	msg, err := c.getText(ctx, path)
	if err != nil {
		return transparency.Checkpoint{}, fmt.Errorf("messaging/client: checkpoint: %w", err)
	}
	c.logMu.Lock()
	defer c.logMu.Unlock()
	st, err := c.loadLog(ctx)
	if err != nil {
		return transparency.Checkpoint{}, err
	}
	cp, _, err := transparency.Open(msg, st.verifier)
	if err != nil {
		return cp, logErr(err)
	}
	if err := c.accept(ctx, st, msg, cp, c.consistencyProof); err != nil {
		return cp, err
	}
	return st.cp, nil
}

type proofFunc func(ctx context.Context, m, n int64) ([]tlog.Hash, error)

// accept checks the opened checkpoint cp (signed note msg) against the
// stored state: the same tree as the stored one, an older tree the stored
// one extends, or a newer one that extends it (then stored). Called with
// c.logMu held.
func (c *Client) accept(ctx context.Context, st *logState, msg []byte, cp transparency.Checkpoint, prove proofFunc) error {
	switch {
	case st.note != nil && cp.Size == st.cp.Size:
		if cp.Hash != st.cp.Hash {
			return logErr(fmt.Errorf("%w: two different trees of size %d (the stored one and this)", transparency.ErrConsistency, cp.Size))
		}
		return nil
	case st.note != nil && cp.Size < st.cp.Size:
		// An older checkpoint (a node that answered before the newest
		// append): the stored tree must extend it.
		p, err := prove(ctx, cp.Size, st.cp.Size)
		if err != nil {
			return err
		}
		if err := transparency.VerifyConsistency(cp, st.cp, p); err != nil {
			return logErr(err)
		}
		return nil
	}
	if c.checkCheckpoint != nil {
		if err := c.checkCheckpoint(msg, cp); err != nil {
			return logErr(fmt.Errorf("checkpoint of size %d refused: %w", cp.Size, err))
		}
	}
	if st.note != nil {
		p, err := prove(ctx, st.cp.Size, cp.Size)
		if err != nil {
			return err
		}
		if err := transparency.VerifyConsistency(st.cp, cp, p); err != nil {
			return logErr(err)
		}
	}
	if err := c.store.Put(nameLogCheckpoint, msg); err != nil {
		return err
	}
	st.note, st.cp = bytes.Clone(msg), cp
	return nil
}

// VerifyLogged checks an attachment the server sent with a binding: its
// checkpoint is signed by the pinned log key and consistent with the
// stored one (a newer one is stored), and the inclusion proof puts the
// entry in that tree. It returns the parsed entry; the caller checks that
// it names the binding it came with. A nil attachment is ErrNotLogged.
func (c *Client) VerifyLogged(ctx context.Context, a *transparency.Attachment) (*transparency.Entry, error) {
	if a == nil {
		return nil, fmt.Errorf("%w: no inclusion proof", ErrNotLogged)
	}
	proof, err := transparency.DecodeHashes(a.Proof)
	if err != nil {
		return nil, logErr(err)
	}
	c.logMu.Lock()
	st, err := c.loadLog(ctx)
	if err != nil {
		c.logMu.Unlock()
		return nil, err
	}
	var cp transparency.Checkpoint
	if st.note != nil && string(st.note) == a.Checkpoint {
		// The stored note itself: its signature was checked when stored.
		cp = st.cp
	} else if cp, _, err = transparency.Open([]byte(a.Checkpoint), st.verifier); err == nil {
		err = c.accept(ctx, st, []byte(a.Checkpoint), cp, c.consistencyProof)
	} else {
		err = logErr(err)
	}
	c.logMu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := transparency.VerifyInclusion(cp, a.Index, a.Entry, proof); err != nil {
		return nil, logErr(err)
	}
	e, err := transparency.ParseEntry(a.Entry)
	if err != nil {
		return nil, logErr(err)
	}
	return e, nil
}

// logged checks that attachment a proves an entry of kind that names
// account, device and the certificate der (and org, role for a
// membership; key for an identity key). A version 2 entry names the
// account by its commitment: a.Salt must be the account's pinned salt
// (pinned here on first use) and recompute the entry's commitment from
// want.Account. The error wraps ErrNotLogged or ErrLog.
func (c *Client) logged(ctx context.Context, a *transparency.Attachment, want transparency.Entry, certDER []byte) error {
	e, err := c.VerifyLogged(ctx, a)
	if err != nil {
		return err
	}
	want.Cert = transparency.CertFingerprint(certDER)
	kindOK := e.Kind == want.Kind || want.Kind == transparency.KindDevice && e.Kind == transparency.KindDeviceRevoked
	if !kindOK || !e.NamesAccount(want.Account, a.Salt) || e.Device != want.Device || e.Cert != want.Cert || e.Org != want.Org ||
		e.Role != want.Role || !bytes.Equal(e.Key, want.Key) {
		return fmt.Errorf("%w: entry %d is a %s entry of device %s, not the %s entry of this certificate of account %s",
			ErrNotLogged, a.Index, e.Kind, e.Device, want.Kind, want.Account)
	}
	if e.Version == transparency.V2 {
		return c.pinSalt(want.Account, a.Salt)
	}
	return nil
}

// pinSalt pins salt as account's log salt if none is pinned, and refuses
// one that differs from the pinned salt with ErrSaltChanged.
func (c *Client) pinSalt(account string, salt []byte) error {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	pinned, err := c.store.Get(nameLogSalt + account)
	switch {
	case errors.Is(err, ErrNotFound):
		return c.store.Put(nameLogSalt+account, bytes.Clone(salt))
	case err != nil:
		return err
	case !bytes.Equal(pinned, salt):
		return fmt.Errorf("%w: account %s", ErrSaltChanged, account)
	}
	return nil
}

// LogSalt returns the salt pinned for account: the one its first
// verified version 2 entry came with. ErrNotFound if none is pinned.
func (c *Client) LogSalt(account string) ([]byte, error) {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	return c.store.Get(nameLogSalt + account)
}

// notLogged is the refusal of a device's binding over a log check.
func notLogged(device, what string, err error) error {
	return fmt.Errorf("%w: device %q: %s: %w", ErrUntrusted, device, what, err)
}

// LoggedDevice is a device of an account whose certificate the directory
// listed with a verified inclusion proof of its log entry.
type LoggedDevice struct {
	Device  ca.DeviceIdentity // from the certificate, chained to the CA
	Revoked bool              // the entry is the device's revocation
	Index   int64             // the entry's index in the log
	der     []byte
}

// DeviceList is an account's devices from the directory: those whose
// certificate and log entry verified, and the refused ones.
type DeviceList struct {
	Devices []LoggedDevice
	Refused []Refusal // wraps ErrUntrusted (and ErrNotLogged or ErrLog)
	// Salt is the account's log salt as the directory gave it (nil if it
	// gave none); it is checked against, or pinned as, the account's salt.
	Salt []byte
}

// Devices fetches the devices of account from the directory (GET
// /v1/directory/accounts/{id}/devices) and keeps those whose certificate
// chains to the CA, names the account and comes with a verified inclusion
// proof of its device entry (or, revoked, its device-revoked entry). The
// certificates are checked for their chain, not their validity period or
// revocation status: the list is the account's history as the log shows it.
func (c *Client) Devices(ctx context.Context, account string) (*DeviceList, error) {
	var d identity.DirectoryDevices
	if err := c.do(ctx, http.MethodGet, "/v1/directory/accounts/"+url.PathEscape(account)+"/devices", nil, &d); err != nil {
		return nil, fmt.Errorf("messaging/client: devices of %s: %w", account, err)
	}
	out := &DeviceList{}
	if d.LogSalt != nil {
		if _, ok := transparency.SaltOf(d.LogSalt); !ok {
			return nil, fmt.Errorf("%w: devices of %s: the log salt has %d bytes, not %d", ErrNotLogged, account, len(d.LogSalt), transparency.SaltBytes)
		}
		if err := c.pinSalt(account, d.LogSalt); err != nil {
			return nil, fmt.Errorf("messaging/client: devices of %s: %w", account, err)
		}
		out.Salt = d.LogSalt
	}
	for _, dev := range d.Devices {
		der := derOf(dev.Certificate)
		di, err := c.chainOnly(der, dev.DeviceID)
		if err == nil && di.AccountID != account {
			err = untrusted(dev.DeviceID, "certificate is for account %q, not %q", di.AccountID, account)
		}
		if err == nil {
			if lerr := c.logged(ctx, dev.Log, transparency.Entry{Kind: transparency.KindDevice, Account: account, Device: dev.DeviceID}, der); lerr != nil {
				err = notLogged(dev.DeviceID, "device certificate", lerr)
			}
		}
		if err != nil {
			out.Refused = append(out.Refused, Refusal{DeviceID: dev.DeviceID, Err: err})
			continue
		}
		out.Devices = append(out.Devices, LoggedDevice{Device: di, Revoked: dev.Status == identity.StatusRevoked, Index: dev.Log.Index, der: der})
	}
	return out, nil
}

// chainOnly checks that der is a device certificate of device chained to
// the CA, whatever its validity period (a revoked or expired device stays
// in the history).
func (c *Client) chainOnly(der []byte, device string) (ca.DeviceIdentity, error) {
	if der == nil {
		return ca.DeviceIdentity{}, untrusted(device, "no device certificate")
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return ca.DeviceIdentity{}, untrusted(device, "device certificate: %v", err)
	}
	di, err := ca.VerifyDevice(der, c.roots, cert.NotBefore)
	if err != nil {
		return di, untrusted(device, "device certificate: %v", err)
	}
	if di.DeviceID != device {
		return di, untrusted(device, "certificate is for device %q", di.DeviceID)
	}
	return di, nil
}

// senderLogged checks that the device certificate der of a sender is in
// the log: GET /v1/log/lookup gives its device entry with an inclusion
// proof, which must verify and name this certificate, device and account.
// It runs before the caller takes c.mu, like the certificate status. A
// certificate that does not verify is left to checkDevice.
func (c *Client) senderLogged(ctx context.Context, device string, der []byte) error {
	di, err := ca.VerifyDevice(der, c.roots, c.now())
	if err != nil {
		return nil // checkDevice refuses it
	}
	fp := transparency.CertFingerprint(der)
	var a transparency.Attachment
	q := url.Values{"kind": {string(transparency.KindDevice)}, "device": {device}, "cert": {fp.String()}}
	err = c.do(ctx, http.MethodGet, "/v1/log/lookup?"+q.Encode(), nil, &a)
	if idclient.IsProblem(err, string(translog.TypeNotInLog)) {
		return notLogged(device, "sender", fmt.Errorf("%w: the log has no entry of this device certificate of account %s", ErrNotLogged, di.AccountID))
	}
	if err != nil {
		return fmt.Errorf("messaging/client: the sender's log entry: %w", err)
	}
	if err := c.logged(ctx, &a, transparency.Entry{Kind: transparency.KindDevice, Account: di.AccountID, Device: device}, der); err != nil {
		return notLogged(device, "sender", err)
	}
	return nil
}
