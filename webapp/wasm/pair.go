//go:build js && wasm

package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"syscall/js"

	idclient "github.com/kanal-server/kanal/identity/client"
	mclient "github.com/kanal-server/kanal/messaging/client"
)

// Pairing: the browser becomes a device of an account that already has
// one, the way 'kanal device request' / 'approve' / 'install' add a
// machine (identity/client's pairing). The browser's WebCrypto key signs
// a certificate request; the user carries it to an enrolled device, which
// approves it; the certificate comes back and the browser installs it.
// Both ends show the key's fingerprint (idclient.KeyFingerprint), which
// the user compares before approving. The reverse — this browser
// approving another device's request — is approve below.

// namePairing holds, until the certificate is installed, the request
// this browser made: a reload between request and install shows it
// again after unlocking, for the same key.
const namePairing = "app/pairing"

// maxPEMInput bounds a pasted request or certificate, as the CLI does.
const maxPEMInput = 64 << 10

type pairRequestView struct {
	Request     string `json:"request"` // PEM, for 'kanal device approve'
	Fingerprint string `json:"fingerprint"`
}

// pairRequest(passphrase): the shell has made the browser's new
// non-extractable key; this sets up the encrypted store under the
// passphrase and returns the certificate request and its fingerprint.
func (a *app) pairRequest(args []js.Value) (any, error) {
	key, err := a.deviceKey()
	if err != nil {
		return nil, err
	}
	store, err := newStore(a.shell, args[0].String(), true)
	if err != nil {
		return nil, err
	}
	csr, err := idclient.CertificateRequest(key)
	if err != nil {
		return nil, err
	}
	fp, err := idclient.KeyFingerprint(key.Public())
	if err != nil {
		return nil, err
	}
	v := pairRequestView{Request: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})), Fingerprint: fp}
	b, _ := json.Marshal(v)
	if err := store.Put(namePairing, b); err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.pairStore = store
	a.mu.Unlock()
	return jsonString(v)
}

// pendingPairing is unlock's answer for a browser that made a request and
// has no certificate yet: {"pending": {request, fingerprint}}.
func (a *app) pendingPairing(store *idbStore) (any, error) {
	b, err := store.Get(namePairing)
	if err != nil {
		return nil, err
	}
	var v pairRequestView
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	key, err := a.deviceKey()
	if err != nil {
		return nil, err
	}
	// The request is for the key the browser holds now, or it is stale.
	if fp, err := idclient.KeyFingerprint(key.Public()); err != nil || fp != v.Fingerprint {
		return nil, errors.New("this browser's key is not the one its pairing request was made for: add it again")
	}
	a.mu.Lock()
	a.pairStore = store
	a.mu.Unlock()
	return jsonString(map[string]pairRequestView{"pending": v})
}

// pairInstall(certificatePEM) installs the certificate the approving
// device printed: it must chain to the deployment CA and certify this
// browser's key (checked offline, as a peer would); the CA comes from the
// server, as for 'kanal device install' — whether the certificate
// certifies this key does not depend on trusting it. Then the device
// logs in and publishes its keys, as after enrolment.
func (a *app) pairInstall(args []js.Value) (any, error) {
	ctx := context.Background()
	certPEM := strings.TrimSpace(args[0].String()) + "\n"
	if len(certPEM) > maxPEMInput {
		return nil, errors.New("that is too long for a device certificate")
	}
	a.mu.Lock()
	store := a.pairStore
	a.mu.Unlock()
	if store == nil {
		return nil, errors.New("make the request first")
	}
	key, err := a.deviceKey()
	if err != nil {
		return nil, err
	}
	dir, err := a.ident().DirectoryCA(ctx)
	if err != nil {
		return nil, err
	}
	st := &state{CertPEM: certPEM, CAPEM: dir.Certificate, Intermediates: dir.Intermediates}
	id, err := checkCert(st, key)
	if err != nil {
		return nil, err
	}
	st.AccountID, st.DeviceID = id.AccountID, id.DeviceID
	b, _ := json.Marshal(st)
	if err := store.Put(nameState, b); err != nil {
		return nil, err
	}
	if err := store.Delete(namePairing); err != nil {
		return nil, err
	}
	if err := a.open(ctx, st, store, key); err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.pairStore = nil
	a.mu.Unlock()
	return a.meJSON(ctx)
}

// requestFingerprint(requestPEM) checks another device's request and
// returns its key's fingerprint, for the user to compare before approve.
func (a *app) requestFingerprint(args []js.Value) (any, error) {
	in := args[0].String()
	if len(in) > maxPEMInput {
		return nil, errors.New("that is too long for a certificate request")
	}
	_, fp, err := idclient.ParseRequest([]byte(in))
	return fp, err
}

type approveView struct {
	Device      string `json:"device"`
	Fingerprint string `json:"fingerprint"`
	Certificate string `json:"certificate"` // PEM, for 'kanal device install'
}

// approve(requestPEM, name, password) approves another device's request
// as 'kanal device approve' does: with a session of level substantial
// (the account password, as for a contract: substantial in
// participate.go) and this device's approval signed with its WebCrypto
// key (EnrollCSR with WithDevice).
func (a *app) approve(args []js.Value) (any, error) {
	ctx := context.Background()
	in, name, password := args[0].String(), strings.TrimSpace(args[1].String()), args[2].String()
	if len(in) > maxPEMInput {
		return nil, errors.New("that is too long for a certificate request")
	}
	csr, fp, err := idclient.ParseRequest([]byte(in))
	if err != nil {
		return nil, err
	}
	if password == "" {
		return nil, errors.New("approving a device needs the account password")
	}
	dev, err := a.device()
	if err != nil {
		return nil, err
	}
	token, _, err := a.substantial(ctx, dev, password)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	st := a.st // substantial may have renewed the certificate
	a.mu.Unlock()
	if name == "" {
		name = "device approved by " + st.DeviceID
	}
	res, err := a.ident().WithToken(token).WithDevice(st.DeviceID, dev.key).EnrollCSR(ctx, name, csr)
	if err != nil {
		return nil, err
	}
	// This device enrolled it: a monitor of the account expects it.
	if err := mclient.ExpectDevice(dev.store, res.DeviceID); err != nil {
		return nil, err
	}
	return jsonString(approveView{Device: res.DeviceID, Fingerprint: fp, Certificate: res.Certificate})
}
