package identity

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"testing"
)

var updateVectors = flag.Bool("update", false, "rewrite identity/testdata/renew-vectors.json")

// renewVector is one test vector of a device-key proof — a renewal
// (RenewMessage) or an approval of a new device (ApproveMessage) — as
// docs/api-identity.md cites it: the inputs, the exact bytes signed, and
// an Ed25519 signature over them (Ed25519 is deterministic, so the
// signature is part of the vector).
type renewVector struct {
	Kind        string `json:"kind"` // "renew" or "approve"
	ChallengeID string `json:"challenge_id"`
	DeviceID    string `json:"device_id"` // the renewed device, or the approving one
	Nonce       string `json:"nonce"`
	CSR         string `json:"csr"`          // base64 DER, as RenewRequest carries it
	Message     string `json:"message"`      // the signed bytes, as a string
	MessageHex  string `json:"message_hex"`  // the same bytes in hex
	Ed25519Seed string `json:"ed25519_seed"` // hex, the current device key
	Signature   string `json:"signature"`    // base64, as RenewRequest carries it
}

const renewVectorsFile = "testdata/renew-vectors.json"

func TestRenewMessageVectors(t *testing.T) {
	if *updateVectors {
		seed := make([]byte, ed25519.SeedSize)
		for i := range seed {
			seed[i] = byte(i)
		}
		key := ed25519.NewKeyFromSeed(seed)
		next := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
		csr, err := base64.StdEncoding.DecodeString(csrFor(t, next))
		if err != nil {
			t.Fatal(err)
		}
		var vs []renewVector
		for _, kind := range []string{"renew", "approve"} {
			v := renewVector{Kind: kind, ChallengeID: "chl_abcdefghijklmnop", DeviceID: "dev_qrstuvwxyz234567",
				Nonce: base64.StdEncoding.EncodeToString(make([]byte, NonceBytes)), CSR: base64.StdEncoding.EncodeToString(csr),
				Ed25519Seed: hex.EncodeToString(seed)}
			msg := vectorMessage(v, csr)
			v.Message, v.MessageHex = string(msg), hex.EncodeToString(msg)
			v.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(key, msg))
			vs = append(vs, v)
		}
		out, _ := json.MarshalIndent(vs, "", "  ")
		if err := os.WriteFile(renewVectorsFile, append(out, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(renewVectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var vs []renewVector
	if err := json.Unmarshal(raw, &vs); err != nil || len(vs) == 0 {
		t.Fatalf("vectors: %v", err)
	}
	for _, v := range vs {
		csr, err := base64.StdEncoding.DecodeString(v.CSR)
		if err != nil {
			t.Fatal(err)
		}
		msg := vectorMessage(v, csr)
		if string(msg) != v.Message || hex.EncodeToString(msg) != v.MessageHex {
			t.Fatalf("%s message = %q, the vector says %q", v.Kind, msg, v.Message)
		}
		seed, _ := hex.DecodeString(v.Ed25519Seed)
		key := ed25519.NewKeyFromSeed(seed)
		sig, _ := base64.StdEncoding.DecodeString(v.Signature)
		if !verifySignature(key.Public(), msg, sig) {
			t.Fatal("the vector's signature does not verify as the server verifies")
		}
		// One byte more or less in any field breaks the proof.
		other := v
		other.Kind = map[string]string{"renew": "approve", "approve": "renew"}[v.Kind]
		moved := v
		moved.DeviceID += "x"
		for _, bad := range [][]byte{
			vectorMessage(moved, csr),
			vectorMessage(v, append(csr, 0)),
			vectorMessage(other, csr),
			LoginMessage(v.ChallengeID, v.DeviceID, v.Nonce),
		} {
			if verifySignature(key.Public(), bad, sig) {
				t.Fatalf("the signature verifies over %q", bad)
			}
		}
	}
}

func vectorMessage(v renewVector, csr []byte) []byte {
	if v.Kind == "approve" {
		return ApproveMessage(v.ChallengeID, v.DeviceID, v.Nonce, csr)
	}
	return RenewMessage(v.ChallengeID, v.DeviceID, v.Nonce, csr)
}
