package client

import (
	"context"
	"crypto"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"

	"github.com/kanal-server/kanal/identity"
)

// Signup asks the server to send a one-time code to email. The server
// answers the same whether or not the address already has an account.
func (c *Client) Signup(ctx context.Context, email string) error {
	var out identity.SignupResponse
	if err := c.do(ctx, http.MethodPost, "/v1/signup", identity.SignupRequest{Email: email}, &out, http.StatusAccepted); err != nil {
		return err
	}
	if out.Status != identity.SignupStatusCodeSent {
		return fmt.Errorf("%w: signup status %q", ErrBadResponse, out.Status)
	}
	return nil
}

// VerifySignup exchanges the e-mailed code for the account id and a setup
// token, which sets the password and enrolls the first device.
func (c *Client) VerifySignup(ctx context.Context, email, code string) (*identity.VerifyResponse, error) {
	var out identity.VerifyResponse
	if err := c.do(ctx, http.MethodPost, "/v1/signup/verify", identity.VerifyRequest{Email: email, Code: code}, &out, http.StatusOK); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetPassword sets the account's password. With a setup token, current is
// empty; with a session, it is the password being replaced.
func (c *Client) SetPassword(ctx context.Context, password, current string) error {
	req := identity.PasswordRequest{Password: password, CurrentPassword: current}
	return c.do(ctx, http.MethodPut, "/v1/account/password", req, nil, http.StatusNoContent)
}

// EnrollDevice asks the CA to certify key as a new device of the account,
// proving possession with a certificate request that key signs. The private
// key never leaves the caller. The first device enrolls with the setup
// token, later ones with a session of level substantial whose device
// approves them (WithDevice).
func (c *Client) EnrollDevice(ctx context.Context, name string, key crypto.Signer) (*identity.EnrollResponse, error) {
	csr, err := CertificateRequest(key)
	if err != nil {
		return nil, err
	}
	return c.EnrollCSR(ctx, name, csr)
}

// EnrollCSR is EnrollDevice for a certificate request made elsewhere: by a
// new device whose key this client never holds, which is how an enrolled
// device approves another.
//
// With a session, the client must know the session's device and key
// (WithDevice): that device approves the new one by signing
// identity.ApproveMessage over a fresh challenge and the request.
func (c *Client) EnrollCSR(ctx context.Context, name string, csrDER []byte) (*identity.EnrollResponse, error) {
	req := identity.EnrollRequest{Name: name, CSR: base64.StdEncoding.EncodeToString(csrDER)}
	if c.key != nil {
		if err := checkKey(c.key); err != nil {
			return nil, err
		}
		ch, err := c.challenge(ctx, c.device, identity.ChallengeApprove)
		if err != nil {
			return nil, err
		}
		sig, err := signMessage(c.key, identity.ApproveMessage(ch.ChallengeID, c.device, ch.Nonce, csrDER))
		if err != nil {
			return nil, fmt.Errorf("sign approval: %w", err)
		}
		req.ChallengeID, req.Signature = ch.ChallengeID, base64.StdEncoding.EncodeToString(sig)
	}
	var out identity.EnrollResponse
	if err := c.do(ctx, http.MethodPost, "/v1/devices", req, &out, http.StatusCreated); err != nil {
		return nil, err
	}
	return &out, nil
}

// Devices lists the account's devices, revoked ones included.
func (c *Client) Devices(ctx context.Context) ([]identity.Device, error) {
	var out identity.DeviceList
	if err := c.do(ctx, http.MethodGet, "/v1/devices", nil, &out, http.StatusOK); err != nil {
		return nil, err
	}
	return out.Devices, nil
}

// RenewDevice asks for a fresh certificate for device id, for the same
// key, proving possession of it (see Renew). The certificate's level is
// the session's.
func (c *Client) RenewDevice(ctx context.Context, id string, key crypto.Signer) (*identity.EnrollResponse, error) {
	return c.Renew(ctx, id, Renewal{Current: key})
}

// Renewal says how to renew a device.
type Renewal struct {
	// Current is the device's current key. It signs the proof the server
	// requires (identity.RenewMessage): a session alone cannot renew.
	Current crypto.Signer
	// Next is the key the new certificate is for; nil keeps Current. A new
	// key ends every session of the device, this client's included: log
	// in again with Next.
	Next crypto.Signer
	// Password, if set, is checked again, so that a low session can get a
	// substantial certificate.
	Password string
}

// Renew renews device id: it asks for a renew challenge, makes a
// certificate request signed by the new key, signs the challenge and the
// request with the current key, and sends both.
func (c *Client) Renew(ctx context.Context, id string, r Renewal) (*identity.EnrollResponse, error) {
	seg, err := segment(id)
	if err != nil {
		return nil, err
	}
	if err := checkKey(r.Current); err != nil {
		return nil, err
	}
	next := r.Next
	if next == nil {
		next = r.Current
	}
	csr, err := CertificateRequest(next)
	if err != nil {
		return nil, err
	}
	ch, err := c.challenge(ctx, id, identity.ChallengeRenew)
	if err != nil {
		return nil, err
	}
	sig, err := signMessage(r.Current, identity.RenewMessage(ch.ChallengeID, id, ch.Nonce, csr))
	if err != nil {
		return nil, fmt.Errorf("sign renewal: %w", err)
	}
	req := identity.RenewRequest{
		CSR:         base64.StdEncoding.EncodeToString(csr),
		ChallengeID: ch.ChallengeID,
		Signature:   base64.StdEncoding.EncodeToString(sig),
		Password:    r.Password,
	}
	var out identity.EnrollResponse
	if err := c.do(ctx, http.MethodPost, "/v1/devices/"+seg+"/renew", req, &out, http.StatusOK); err != nil {
		return nil, err
	}
	return &out, nil
}

// RevokeDevice revokes device id: its certificate goes on the revocation
// list and its sessions end at once.
func (c *Client) RevokeDevice(ctx context.Context, id string) error {
	seg, err := segment(id)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, "/v1/devices/"+seg, nil, nil, http.StatusNoContent)
}

// Login proves possession of device deviceID's key by signing a fresh
// server challenge (identity.LoginMessage), and returns a session. With the
// account's password as well the session reaches level substantial; with
// password empty it stays at level low.
func (c *Client) Login(ctx context.Context, deviceID string, key crypto.Signer, password string) (*identity.SessionResponse, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	var ch identity.ChallengeResponse
	if err := c.do(ctx, http.MethodPost, "/v1/sessions/challenge", identity.ChallengeRequest{DeviceID: deviceID}, &ch, http.StatusOK); err != nil {
		return nil, fmt.Errorf("challenge: %w", err)
	}
	// The nonce is signed as the server sent it, base64 and all; decoding
	// it only checks that the server sent what it promised.
	if nonce, err := base64.StdEncoding.DecodeString(ch.Nonce); err != nil || len(nonce) < minNonceBytes || ch.ChallengeID == "" {
		return nil, fmt.Errorf("%w: malformed challenge", ErrBadResponse)
	}
	sig, err := signMessage(key, identity.LoginMessage(ch.ChallengeID, deviceID, ch.Nonce))
	if err != nil {
		return nil, fmt.Errorf("sign challenge: %w", err)
	}
	req := identity.LoginRequest{
		ChallengeID: ch.ChallengeID,
		DeviceID:    deviceID,
		Signature:   base64.StdEncoding.EncodeToString(sig),
		Password:    password,
	}
	var out identity.SessionResponse
	if err := c.do(ctx, http.MethodPost, "/v1/sessions", req, &out, http.StatusCreated); err != nil {
		return nil, err
	}
	return &out, nil
}

// Refresh trades a refresh token for a new session. Refresh tokens are
// single use: presenting an old one again revokes the whole family
// (identity.TypeRefreshReused).
func (c *Client) Refresh(ctx context.Context, refreshToken string) (*identity.SessionResponse, error) {
	var out identity.SessionResponse
	if err := c.do(ctx, http.MethodPost, "/v1/sessions/refresh", identity.RefreshRequest{RefreshToken: refreshToken}, &out, http.StatusCreated); err != nil {
		return nil, err
	}
	return &out, nil
}

// Logout ends the session whose token c carries.
func (c *Client) Logout(ctx context.Context) error {
	return c.do(ctx, http.MethodDelete, "/v1/sessions/current", nil, nil, http.StatusNoContent)
}

// Me describes the session: account, device, level and organisations.
func (c *Client) Me(ctx context.Context) (*identity.MeResponse, error) {
	var out identity.MeResponse
	if err := c.do(ctx, http.MethodGet, "/v1/me", nil, &out, http.StatusOK); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateOrg creates an organisation of kind office, council or merchant
// (operator). It stays unverified until VerifyOrg.
func (c *Client) CreateOrg(ctx context.Context, name, kind string) (*identity.Organisation, error) {
	var out identity.Organisation
	if err := c.do(ctx, http.MethodPost, "/v1/admin/orgs", identity.CreateOrgRequest{Name: name, Kind: kind}, &out, http.StatusCreated); err != nil {
		return nil, err
	}
	return &out, nil
}

// VerifyOrg marks organisation id verified (operator); the answer carries
// the organisation certificate the CA issued.
func (c *Client) VerifyOrg(ctx context.Context, id string) (*identity.Organisation, error) {
	seg, err := segment(id)
	if err != nil {
		return nil, err
	}
	var out identity.Organisation
	if err := c.do(ctx, http.MethodPost, "/v1/admin/orgs/"+seg+"/verify", nil, &out, http.StatusOK); err != nil {
		return nil, err
	}
	return &out, nil
}

// AddMember adds an account to organisation orgID with a role (operator,
// or an owner or admin of the organisation). who is an e-mail address if
// it contains "@", else an account id.
func (c *Client) AddMember(ctx context.Context, orgID, who, role string) (*identity.Member, error) {
	seg, err := segment(orgID)
	if err != nil {
		return nil, err
	}
	req := identity.AddMemberRequest{Role: role}
	if strings.Contains(who, "@") {
		req.Email = who
	} else {
		req.AccountID = who
	}
	var out identity.Member
	if err := c.do(ctx, http.MethodPost, "/v1/orgs/"+seg+"/members", req, &out, http.StatusCreated); err != nil {
		return nil, err
	}
	return &out, nil
}

// RemoveMember removes an account from organisation orgID; its membership
// certificates are revoked.
// RequireHighForAgents sets whether the organisation's agents must have
// an eID linked (PATCH /v1/orgs/{id}; the operator, an owner or an admin).
func (c *Client) RequireHighForAgents(ctx context.Context, orgID string, on bool) (*identity.Organisation, error) {
	seg, err := segment(orgID)
	if err != nil {
		return nil, err
	}
	var out identity.Organisation
	if err := c.do(ctx, http.MethodPatch, "/v1/orgs/"+seg, identity.OrgSettingsRequest{RequireHighForAgents: &on}, &out, http.StatusOK); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) RemoveMember(ctx context.Context, orgID, accountID string) error {
	seg, err := segment(orgID)
	if err != nil {
		return err
	}
	acc, err := segment(accountID)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, "/v1/orgs/"+seg+"/members/"+acc, nil, nil, http.StatusNoContent)
}

// AccountDevices looks up an account's devices in the public directory
// (any session), revoked ones included, so that a sender can tell a revoked
// device from an unknown one.
func (c *Client) AccountDevices(ctx context.Context, accountID string) ([]identity.DirectoryDevice, error) {
	seg, err := segment(accountID)
	if err != nil {
		return nil, err
	}
	var out identity.DirectoryDevices
	if err := c.do(ctx, http.MethodGet, "/v1/directory/accounts/"+seg+"/devices", nil, &out, http.StatusOK); err != nil {
		return nil, err
	}
	return out.Devices, nil
}

// DirectoryOrg looks up an organisation, its certificate and its agents'
// membership certificates in the public directory (any session).
func (c *Client) DirectoryOrg(ctx context.Context, id string) (*identity.DirectoryOrg, error) {
	seg, err := segment(id)
	if err != nil {
		return nil, err
	}
	var out identity.DirectoryOrg
	if err := c.do(ctx, http.MethodGet, "/v1/directory/orgs/"+seg, nil, &out, http.StatusOK); err != nil {
		return nil, err
	}
	return &out, nil
}

// DirectoryCA returns the deployment CA certificate and its current
// revocation list (no authentication).
func (c *Client) DirectoryCA(ctx context.Context) (*identity.DirectoryCA, error) {
	var out identity.DirectoryCA
	if err := c.do(ctx, http.MethodGet, "/v1/directory/ca", nil, &out, http.StatusOK); err != nil {
		return nil, err
	}
	return &out, nil
}

// challenge asks for a challenge for device and purpose and checks that
// the server sent what it promised.
func (c *Client) challenge(ctx context.Context, device, purpose string) (*identity.ChallengeResponse, error) {
	var ch identity.ChallengeResponse
	if err := c.do(ctx, http.MethodPost, "/v1/sessions/challenge", identity.ChallengeRequest{DeviceID: device, Purpose: purpose}, &ch, http.StatusOK); err != nil {
		return nil, fmt.Errorf("challenge: %w", err)
	}
	// The nonce is signed as the server sent it, base64 and all; decoding
	// it only checks that the server sent what it promised.
	if nonce, err := base64.StdEncoding.DecodeString(ch.Nonce); err != nil || len(nonce) < minNonceBytes || ch.ChallengeID == "" {
		return nil, fmt.Errorf("%w: malformed challenge", ErrBadResponse)
	}
	return &ch, nil
}

// EIDStart begins an eID login (level high) for this client's device.
// sealKey is the public half of NewEIDSealKey's pair: the attributes the
// provider releases come back sealed to it.
func (c *Client) EIDStart(ctx context.Context, sealKey string) (*identity.EIDStartResponse, error) {
	var out identity.EIDStartResponse
	if err := c.do(ctx, http.MethodPost, "/v1/eid/start", identity.EIDStartRequest{SealKey: sealKey}, &out, http.StatusCreated); err != nil {
		return nil, err
	}
	return &out, nil
}

// EIDComplete finishes eID login flowID with the device's proof: it
// signs a fresh challenge of purpose eid (identity.EIDMessage) with key.
// While the browser has not come back the server answers
// identity.TypeEIDPending; call it again later.
func (c *Client) EIDComplete(ctx context.Context, deviceID string, key crypto.Signer, flowID string) (*identity.EIDCompleteResponse, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	ch, err := c.challenge(ctx, deviceID, identity.ChallengeEID)
	if err != nil {
		return nil, err
	}
	sig, err := signMessage(key, identity.EIDMessage(ch.ChallengeID, deviceID, ch.Nonce, flowID))
	if err != nil {
		return nil, fmt.Errorf("sign eID proof: %w", err)
	}
	req := identity.EIDCompleteRequest{FlowID: flowID, ChallengeID: ch.ChallengeID, Signature: base64.StdEncoding.EncodeToString(sig)}
	var out identity.EIDCompleteResponse
	if err := c.do(ctx, http.MethodPost, "/v1/eid/complete", req, &out, http.StatusOK); err != nil {
		return nil, err
	}
	return &out, nil
}

// EIDUnlink removes the account's eID link.
func (c *Client) EIDUnlink(ctx context.Context) error {
	return c.do(ctx, http.MethodDelete, "/v1/eid/link", nil, nil, http.StatusNoContent)
}
