//go:build js && wasm

package main

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"syscall/js"

	"golang.org/x/crypto/argon2"

	mclient "github.com/kanal-server/kanal/messaging/client"
)

// idbStore is the SDK's Store (and BatchStore) over IndexedDB, encrypted
// under a key the user unlocks with a passphrase:
//
//	k = Argon2id(passphrase, salt, t=2, m=32 MiB, p=1, 64 bytes)
//	record name  = "s/" + hex(HMAC-SHA256(k[32:], name))
//	record value = nonce(12) || AES-256-GCM(k[:32], nonce, value, aad = record name)
//
// The salt is kept in clear under "meta/salt". Record names are MACs, so
// the store does not show whom this device talks to; the AAD binds each
// value to its name, so values cannot be swapped between records.
type idbStore struct {
	shell   js.Value
	aead    cipher.AEAD
	nameKey []byte
}

var errWrongPassphrase = errors.New("wrong passphrase")

const (
	kdfTime   = 2
	kdfMemory = 32 * 1024 // KiB
)

func newStore(shell js.Value, passphrase string, create bool) (*idbStore, error) {
	if len(passphrase) < 8 {
		return nil, errors.New("the passphrase needs at least 8 characters")
	}
	v, err := await(shell.Call("get", "meta/salt"))
	if err != nil {
		return nil, err
	}
	salt := bytesOf(v)
	switch {
	case len(salt) == 0 && !create:
		return nil, errors.New("this browser is not enrolled")
	case len(salt) == 0 || create:
		salt = make([]byte, 16)
		if _, err := rand.Read(salt); err != nil {
			return nil, err
		}
		if _, err := await(shell.Call("put", "meta/salt", bytesToJS(salt))); err != nil {
			return nil, err
		}
	}
	k := argon2.IDKey([]byte(passphrase), salt, kdfTime, kdfMemory, 1, 64)
	blk, err := aes.NewCipher(k[:32])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, err
	}
	return &idbStore{shell: shell, aead: aead, nameKey: k[32:]}, nil
}

func (s *idbStore) record(name string) string {
	m := hmac.New(sha256.New, s.nameKey)
	m.Write([]byte(name))
	return "s/" + hex.EncodeToString(m.Sum(nil))
}

func (s *idbStore) seal(rec string, value []byte) (js.Value, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return js.Value{}, err
	}
	return bytesToJS(s.aead.Seal(nonce, nonce, value, []byte(rec))), nil
}

func (s *idbStore) Get(name string) ([]byte, error) {
	rec := s.record(name)
	v, err := await(s.shell.Call("get", rec))
	if err != nil {
		return nil, err
	}
	b := bytesOf(v)
	if b == nil {
		return nil, mclient.ErrNotFound
	}
	n := s.aead.NonceSize()
	if len(b) < n {
		return nil, errors.New("store: a record is damaged")
	}
	out, err := s.aead.Open(nil, b[:n], b[n:], []byte(rec))
	if err != nil {
		return nil, errors.New("store: a record does not decrypt (wrong passphrase or tampered)")
	}
	return out, nil
}

func (s *idbStore) Put(name string, value []byte) error {
	return s.PutAll(map[string][]byte{name: value})
}

// PutAll writes every value in one IndexedDB transaction.
func (s *idbStore) PutAll(values map[string][]byte) error {
	batch := js.Global().Get("Array").New()
	for name, value := range values {
		rec := s.record(name)
		sealed, err := s.seal(rec, value)
		if err != nil {
			return err
		}
		batch.Call("push", js.ValueOf([]any{rec, sealed}))
	}
	_, err := await(s.shell.Call("putAll", batch))
	return err
}

func (s *idbStore) Delete(name string) error {
	_, err := await(s.shell.Call("del", s.record(name)))
	return err
}
