package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/kanal-server/kanal/identity"
	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/internal/kanaldtest"
)

const attackPassword = "Tr0ub4dor&3-but-longer"

// substantialUser signs up email with a password and enrols a device
// logged in at level substantial.
func substantialUser(t *testing.T, srv *kanaldtest.Server, email string) *kanaldtest.Device {
	t.Helper()
	ic, v := srv.Verify(t, email)
	setup := ic.WithToken(v.SetupToken)
	if err := setup.SetPassword(context.Background(), attackPassword, ""); err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	return srv.Enrol(t, v.AccountID, setup, "laptop", key, attackPassword)
}

// post sends body to path with token and returns the status, the problem
// type (if any) and the body.
func post(t *testing.T, base, path, token string, body any) (int, string, []byte) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	var p struct{ Type string }
	json.Unmarshal(out, &p)
	return resp.StatusCode, p.Type, out
}

// proof fetches a challenge of purpose for device and signs msg(challenge)
// with key, as the client does.
func proof(t *testing.T, base, device, purpose string, key ed25519.PrivateKey, msg func(id, nonce string) []byte) (string, string) {
	t.Helper()
	status, _, body := post(t, base, "/v1/sessions/challenge", "", identity.ChallengeRequest{DeviceID: device, Purpose: purpose})
	if status != http.StatusOK {
		t.Fatalf("challenge: %d %s", status, body)
	}
	var ch identity.ChallengeResponse
	if err := json.Unmarshal(body, &ch); err != nil {
		t.Fatal(err)
	}
	return ch.ChallengeID, base64.StdEncoding.EncodeToString(ed25519.Sign(key, msg(ch.ChallengeID, ch.Nonce)))
}

// TestAttackAccountDataOfAnother: the adversaries hold a session of their
// own account (Mallory), the operator's token, or a stolen session token
// of Alice without her device key. None of them gets Alice's data or
// erases her account; after her own erasure, her old token is refused.
func TestAttackAccountDataOfAnother(t *testing.T) {
	srv := kanaldtest.Start(t, kanaldBin)
	ctx := context.Background()
	alice := substantialUser(t, srv, "alice@example.org")
	mallory := substantialUser(t, srv, "mallory@example.org")
	aliceKey, malloryKey := alice.Key.(ed25519.PrivateKey), mallory.Key.(ed25519.PrivateKey)
	exportMsg := func(dev string) func(id, nonce string) []byte {
		return func(id, nonce string) []byte {
			return identity.AccountProofMessage(identity.ChallengeExport, id, dev, nonce)
		}
	}
	eraseMsg := func(dev string) func(id, nonce string) []byte {
		return func(id, nonce string) []byte {
			return identity.AccountProofMessage(identity.ChallengeErase, id, dev, nonce)
		}
	}

	// Mallory's own export holds Mallory's data only: no request names
	// the account, so there is nothing to point at Alice.
	x, err := mallory.Identity.ExportAccount(ctx, mallory.DeviceID, mallory.Key)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(x)
	if x.AccountID != mallory.AccountID || strings.Contains(string(raw), alice.AccountID) || strings.Contains(string(raw), "alice@example.org") {
		t.Fatalf("Mallory's export names Alice: %s", raw)
	}

	// Mallory with a challenge for Alice's device, signed by Alice's key
	// (say, a proof she captured): the challenge is not for the
	// session's device.
	ch, sig := proof(t, srv.URL, alice.DeviceID, identity.ChallengeExport, aliceKey, exportMsg(alice.DeviceID))
	if st, typ, _ := post(t, srv.URL, "/v1/account/export", mallory.Token, identity.ExportRequest{ChallengeID: ch, Signature: sig}); st != http.StatusUnauthorized || typ != string(identity.TypeInvalidChallenge) {
		t.Fatalf("Mallory's session with Alice's proof: %d %s", st, typ)
	}
	// Mallory confirming Alice's id with her own valid proof: refused,
	// before the challenge is spent.
	ch, sig = proof(t, srv.URL, mallory.DeviceID, identity.ChallengeErase, malloryKey, eraseMsg(mallory.DeviceID))
	if st, typ, _ := post(t, srv.URL, "/v1/account/erase", mallory.Token, identity.EraseRequest{ChallengeID: ch, Signature: sig, Confirm: alice.AccountID}); st != http.StatusBadRequest || typ != string(typeConfirmMismatch) {
		t.Fatalf("Mallory erasing with Alice's id: %d %s", st, typ)
	}

	// The operator's token is not a session: 401, whatever the proof.
	op := srv.OperatorToken(t)
	ch, sig = proof(t, srv.URL, alice.DeviceID, identity.ChallengeExport, aliceKey, exportMsg(alice.DeviceID))
	for _, path := range []string{"/v1/account/export", "/v1/account/erase"} {
		if st, _, body := post(t, srv.URL, path, op, identity.EraseRequest{ChallengeID: ch, Signature: sig, Confirm: alice.AccountID}); st != http.StatusUnauthorized {
			t.Fatalf("operator token on %s: %d %s", path, st, body)
		}
	}

	// A thief with Alice's session token but not her device key: a proof
	// by another key, a login signature, or an export proof offered for
	// erasure are all refused.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	ch, sig = proof(t, srv.URL, alice.DeviceID, identity.ChallengeExport, other, exportMsg(alice.DeviceID))
	if st, typ, _ := post(t, srv.URL, "/v1/account/export", alice.Token, identity.ExportRequest{ChallengeID: ch, Signature: sig}); st != http.StatusUnauthorized || typ != string(identity.TypeInvalidCredentials) {
		t.Fatalf("export with another key's proof: %d %s", st, typ)
	}
	ch, sig = proof(t, srv.URL, alice.DeviceID, identity.ChallengeLogin, aliceKey, func(id, nonce string) []byte {
		return identity.LoginMessage(id, alice.DeviceID, nonce)
	})
	if st, _, _ := post(t, srv.URL, "/v1/account/export", alice.Token, identity.ExportRequest{ChallengeID: ch, Signature: sig}); st != http.StatusUnauthorized {
		t.Fatalf("export with a login challenge and signature: %d", st)
	}
	ch, sig = proof(t, srv.URL, alice.DeviceID, identity.ChallengeExport, aliceKey, exportMsg(alice.DeviceID))
	if st, _, _ := post(t, srv.URL, "/v1/account/erase", alice.Token, identity.EraseRequest{ChallengeID: ch, Signature: sig, Confirm: alice.AccountID}); st != http.StatusUnauthorized {
		t.Fatalf("erase with an export proof: %d", st)
	}
	// A low session (device key alone, no password) cannot erase.
	low, err := idclient.New(srv.URL, nil).Login(ctx, alice.DeviceID, alice.Key, "")
	if err != nil {
		t.Fatal(err)
	}
	ch, sig = proof(t, srv.URL, alice.DeviceID, identity.ChallengeErase, aliceKey, eraseMsg(alice.DeviceID))
	if st, typ, _ := post(t, srv.URL, "/v1/account/erase", low.Token, identity.EraseRequest{ChallengeID: ch, Signature: sig, Confirm: alice.AccountID}); st != http.StatusForbidden || typ != "urn:kanal:problem:insufficient-level-of-assurance" {
		t.Fatalf("erase with a low session: %d %s", st, typ)
	}
	// Bad input: unknown fields, a signature that is not base64.
	if st, typ, _ := post(t, srv.URL, "/v1/account/export", alice.Token, map[string]string{"challenge_id": "x", "signature": "x", "account_id": mallory.AccountID}); st != http.StatusBadRequest {
		t.Fatalf("export naming an account: %d %s", st, typ)
	}
	if st, typ, _ := post(t, srv.URL, "/v1/account/export", alice.Token, identity.ExportRequest{ChallengeID: "chl_x", Signature: "%%%"}); st != http.StatusBadRequest {
		t.Fatalf("export with a bad signature encoding: %d %s", st, typ)
	}

	// Nothing above erased anyone.
	for _, d := range []*kanaldtest.Device{alice, mallory} {
		if _, err := d.Identity.Me(ctx); err != nil {
			t.Fatalf("%s after the attacks: %v", d.AccountID, err)
		}
	}

	// Alice erases her account; her old token, and a new login, are
	// refused; Mallory is untouched.
	if _, err := alice.Identity.EraseAccount(ctx, alice.DeviceID, alice.Key, alice.AccountID); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{alice.Token, low.Token} {
		if _, err := alice.Identity.WithToken(tok).Me(ctx); idclient.StatusOf(err) != http.StatusUnauthorized {
			t.Fatalf("the erased account's token: %v", err)
		}
		ch, sig = proof(t, srv.URL, mallory.DeviceID, identity.ChallengeExport, malloryKey, exportMsg(mallory.DeviceID))
		if st, _, _ := post(t, srv.URL, "/v1/account/export", tok, identity.ExportRequest{ChallengeID: ch, Signature: sig}); st != http.StatusUnauthorized {
			t.Fatalf("export with the erased account's token: %d", st)
		}
	}
	if _, err := idclient.New(srv.URL, nil).Login(ctx, alice.DeviceID, alice.Key, attackPassword); idclient.StatusOf(err) != http.StatusUnauthorized ||
		!idclient.IsProblem(err, string(identity.TypeDeviceRevoked)) {
		t.Fatalf("login of the erased account's device: %v", err)
	}
	if _, err := mallory.Identity.Me(ctx); err != nil {
		t.Fatalf("Mallory after Alice's erasure: %v", err)
	}
	// The e-mail address is free again: a new sign-up makes a new account.
	if _, v := srv.Verify(t, "alice@example.org"); v.AccountID == alice.AccountID {
		t.Fatal("a new sign-up got the erased account's id")
	}
}
