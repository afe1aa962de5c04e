package push

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/kanal-server/kanal/internal/db"
)

// vapidKey is the deployment's application server key (RFC 8292). Browsers
// bind a subscription to its public key (applicationServerKey), and push
// services accept only pushes signed with the matching private key.
type vapidKey struct {
	public  string // base64url, uncompressed point, as clients need it
	private string // base64url of the 32-byte scalar, as webpush-go takes it
}

// sealAAD binds a sealed key to its purpose and format.
const sealAAD = "kanal push vapid private key v1"

// loadVAPID returns the deployment's VAPID key, creating it on the first
// start. It lives in the database because every node of a deployment
// shares the database and must sign with the same key: concurrent first
// starts insert with ON CONFLICT DO NOTHING and all read back the winner.
// The private scalar is sealed under sealKey (derived from the deployment
// secret, which the database does not hold), so a database dump cannot sign
// pushes. A key sealed under legacyKey (if set) is sealed again under
// sealKey, once.
func loadVAPID(ctx context.Context, d *db.DB, sealKey, legacyKey []byte, now time.Time) (vapidKey, error) {
	aead, err := newAEAD(sealKey)
	if err != nil {
		return vapidKey{}, err
	}
	fresh, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return vapidKey{}, fmt.Errorf("push.vapid: %w", err)
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return vapidKey{}, fmt.Errorf("push.vapid: %w", err)
	}
	enc := base64.RawURLEncoding
	sealed := aead.Seal(nonce, nonce, fresh.Bytes(), []byte(sealAAD))
	var pub, sealedStored string
	err = d.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO push_vapid (singleton, public_key, sealed_private, created_at) VALUES (1, $1, $2, $3)
			 ON CONFLICT (singleton) DO NOTHING`,
			enc.EncodeToString(fresh.PublicKey().Bytes()), enc.EncodeToString(sealed), now.Unix()); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT public_key, sealed_private FROM push_vapid WHERE singleton = 1`).Scan(&pub, &sealedStored)
	})
	if err != nil {
		return vapidKey{}, fmt.Errorf("push.vapid: %w", err)
	}
	raw, err := enc.DecodeString(sealedStored)
	if err != nil || len(raw) < aead.NonceSize() {
		return vapidKey{}, errors.New("push.vapid: stored key is malformed")
	}
	scalar, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte(sealAAD))
	if err != nil && legacyKey != nil {
		scalar, err = reseal(ctx, d, aead, legacyKey, sealedStored, raw)
	}
	if err != nil {
		return vapidKey{}, errors.New("push.vapid: the stored VAPID key was sealed under another deployment secret (or CA key)")
	}
	priv, err := ecdh.P256().NewPrivateKey(scalar)
	if err != nil {
		return vapidKey{}, fmt.Errorf("push.vapid: stored key: %w", err)
	}
	pubRaw, err := enc.DecodeString(pub)
	if err != nil || subtle.ConstantTimeCompare(pubRaw, priv.PublicKey().Bytes()) != 1 {
		return vapidKey{}, errors.New("push.vapid: stored public key does not match the private key")
	}
	return vapidKey{public: pub, private: enc.EncodeToString(scalar)}, nil
}

// reseal opens a VAPID key sealed under legacyKey and stores it sealed
// under aead instead. The update matches the old sealed value, so of
// nodes upgrading at once one writes and the others' updates change
// nothing; all of them use the same scalar.
func reseal(ctx context.Context, d *db.DB, aead cipher.AEAD, legacyKey []byte, stored string, raw []byte) ([]byte, error) {
	old, err := newAEAD(legacyKey)
	if err != nil {
		return nil, err
	}
	scalar, err := old.Open(nil, raw[:old.NonceSize()], raw[old.NonceSize():], []byte(sealAAD))
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	resealed := base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, scalar, []byte(sealAAD)))
	if _, err := d.Exec(ctx, `UPDATE push_vapid SET sealed_private = $1 WHERE singleton = 1 AND sealed_private = $2`, resealed, stored); err != nil {
		return nil, fmt.Errorf("push.vapid: seal again: %w", err)
	}
	return scalar, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, errors.New("push.vapid: the seal key must be 32 bytes")
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("push.vapid: %w", err)
	}
	return cipher.NewGCM(b)
}
