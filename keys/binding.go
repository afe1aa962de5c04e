package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// The E2E identity key is bound to the PKI by a signature of the device key,
// the key the deployment CA certifies (ECDSA P-256 in phone hardware, or
// Ed25519). A peer that has verified the device certificate chain elsewhere
// verifies this signature to learn which identity key the device uses.

const identityBindingContext = "kanal identity binding v1"

// identityBindingMessage is context || 0 || len(deviceID) || deviceID ||
// Encode(identity). The length prefix keeps the split between device id and
// key unambiguous; the device id stops a binding made for one device from
// being replayed for another device holding the same device key.
func identityBindingMessage(id IdentityPublic, deviceID string) ([]byte, error) {
	if id.IsZero() {
		return nil, fmt.Errorf("keys.identityBinding: %w", ErrInvalidKey)
	}
	if deviceID == "" || len(deviceID) > MaxDeviceIDLen {
		return nil, fmt.Errorf("keys.identityBinding: device id length %d: %w", len(deviceID), ErrInvalidEncoding)
	}
	var msg []byte
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(deviceID)))
	msg = append(msg, deviceID...)
	msg = append(msg, id.bytes()...)
	return signedMessage(identityBindingContext, msg), nil
}

// SignIdentity signs id for deviceID with the device key: Ed25519 over the
// binding message, or ECDSA P-256 over its SHA-256 (ASN.1 DER signature).
func SignIdentity(deviceKey crypto.Signer, id IdentityPublic, deviceID string) ([]byte, error) {
	msg, err := identityBindingMessage(id, deviceID)
	if err != nil {
		return nil, err
	}
	switch pub := deviceKey.Public().(type) {
	case ed25519.PublicKey:
		return deviceKey.Sign(rand.Reader, msg, crypto.Hash(0))
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return nil, fmt.Errorf("keys.SignIdentity: ECDSA curve %s: %w", pub.Curve.Params().Name, ErrUnsupportedKey)
		}
		digest := sha256.Sum256(msg)
		return deviceKey.Sign(rand.Reader, digest[:], crypto.SHA256)
	default:
		return nil, fmt.Errorf("keys.SignIdentity: %T: %w", pub, ErrUnsupportedKey)
	}
}

// VerifyIdentity checks a binding made by SignIdentity. devicePub must be an
// ed25519.PublicKey or a P-256 *ecdsa.PublicKey, normally taken from the
// device certificate after its chain was verified.
func VerifyIdentity(devicePub crypto.PublicKey, id IdentityPublic, deviceID string, sig []byte) error {
	msg, err := identityBindingMessage(id, deviceID)
	if err != nil {
		return err
	}
	ok := false
	switch pub := devicePub.(type) {
	case ed25519.PublicKey:
		ok = len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, msg, sig)
	case *ecdsa.PublicKey:
		if pub == nil || pub.Curve != elliptic.P256() {
			return fmt.Errorf("keys.VerifyIdentity: %w", ErrUnsupportedKey)
		}
		digest := sha256.Sum256(msg)
		ok = ecdsa.VerifyASN1(pub, digest[:], sig)
	default:
		return fmt.Errorf("keys.VerifyIdentity: %T: %w", devicePub, ErrUnsupportedKey)
	}
	if !ok {
		return fmt.Errorf("keys.VerifyIdentity: %w", ErrBadSignature)
	}
	return nil
}
