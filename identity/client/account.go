package client

import (
	"context"
	"crypto"
	"encoding/base64"
	"fmt"
	"net/http"

	"github.com/kanal-server/kanal/identity"
)

// ExportAccount asks for everything the server holds about the session's
// account (GDPR Art. 15), proving device deviceID's key over a fresh
// challenge of purpose "export" (identity.AccountProofMessage).
func (c *Client) ExportAccount(ctx context.Context, deviceID string, key crypto.Signer) (*identity.AccountExport, error) {
	ch, sig, err := c.accountProof(ctx, identity.ChallengeExport, deviceID, key)
	if err != nil {
		return nil, err
	}
	var out identity.AccountExport
	if err := c.doCapped(ctx, http.MethodPost, "/v1/account/export", identity.ExportRequest{ChallengeID: ch, Signature: sig}, &out,
		http.StatusOK, MaxExportBytes); err != nil {
		return nil, err
	}
	return &out, nil
}

// EraseAccount erases the session's account (GDPR Art. 17): confirm must
// be its id. It needs a substantial session and proves device deviceID's
// key over a fresh challenge of purpose "erase". Afterwards no token of
// the account works and its devices cannot log in.
func (c *Client) EraseAccount(ctx context.Context, deviceID string, key crypto.Signer, confirm string) (*identity.AccountErasure, error) {
	ch, sig, err := c.accountProof(ctx, identity.ChallengeErase, deviceID, key)
	if err != nil {
		return nil, err
	}
	var out identity.AccountErasure
	if err := c.do(ctx, http.MethodPost, "/v1/account/erase", identity.EraseRequest{ChallengeID: ch, Signature: sig, Confirm: confirm}, &out, http.StatusOK); err != nil {
		return nil, err
	}
	return &out, nil
}

// accountProof fetches a challenge of purpose for deviceID and signs it.
func (c *Client) accountProof(ctx context.Context, purpose, deviceID string, key crypto.Signer) (challengeID, signature string, err error) {
	if err := checkKey(key); err != nil {
		return "", "", err
	}
	ch, err := c.challenge(ctx, deviceID, purpose)
	if err != nil {
		return "", "", err
	}
	sig, err := signMessage(key, identity.AccountProofMessage(purpose, ch.ChallengeID, deviceID, ch.Nonce))
	if err != nil {
		return "", "", fmt.Errorf("sign challenge: %w", err)
	}
	return ch.ChallengeID, base64.StdEncoding.EncodeToString(sig), nil
}
