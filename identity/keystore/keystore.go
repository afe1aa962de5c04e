// Package keystore is the kanal CLI's encrypted key store: one file, under a
// directory the caller chooses (KANAL_HOME), holding the client's device
// key, device certificate, ids, server URL, session token and other client
// secrets.
//
// # File format
//
// A file is a header followed by a ciphertext:
//
//	magic     "kanal-keystore"       14 bytes
//	version   1                      1 byte
//	memory    argon2id memory, KiB   4 bytes, big-endian
//	time      argon2id passes        4 bytes, big-endian
//	threads   argon2id parallelism   1 byte
//	salt      random                 16 bytes
//	nonce     random, per save       24 bytes
//	check     passphrase check       16 bytes
//	ciphertext                       XChaCha20-Poly1305(key, nonce, payload, aad = header)
//
// argon2id derives 64 bytes from the passphrase and salt: the first 32 are the
// XChaCha20-Poly1305 key, the last 32 a check key. check is the first 16
// bytes of HMAC-SHA-256(check key, header before check); it tells a wrong
// passphrase (ErrWrongPassphrase) from a damaged ciphertext (ErrCorrupt). It
// gives an attacker nothing the ciphertext does not: either way a guess costs
// one argon2id run. The whole header is the AEAD's additional data, so the
// parameters cannot be changed without detection. A new nonce is drawn at
// every save; XChaCha20's 192-bit nonce makes random nonces safe under one
// key. The salt, and with it the argon2id output, is kept from the open
// or the first save and drawn afresh only when the passphrase or the
// parameters change, so a client that saves after every message does not
// run argon2id each time.
//
// The payload is JSON, decoded strictly. The argon2id parameters are in the
// header so that they can be raised later: Open accepts whatever a file says
// within limits, SetParams changes them for the next Save.
package keystore

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

// Errors callers branch on.
var (
	ErrWrongPassphrase = errors.New("keystore: wrong passphrase")
	ErrCorrupt         = errors.New("keystore: file damaged or tampered with")
	ErrFormat          = errors.New("keystore: not a kanal key store")
	ErrVersion         = errors.New("keystore: unsupported version")
	ErrParams          = errors.New("keystore: argon2id parameters out of range")
	ErrPermissions     = errors.New("keystore: file is accessible by group or others")
	ErrEmptyPassphrase = errors.New("keystore: empty passphrase")
	ErrUnsupportedKey  = errors.New("keystore: unsupported device key type")
)

const (
	magic   = "kanal-keystore"
	version = 1

	saltSize   = 16
	checkSize  = 16
	headerSize = len(magic) + 1 + 4 + 4 + 1 + saltSize + chacha20poly1305.NonceSizeX + checkSize

	// MaxFileSize bounds a key store file; ratchet sessions and other state
	// in Secrets must fit.
	MaxFileSize = 64 << 20
)

// Params are argon2id parameters.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
}

// DefaultParams returns OWASP's argon2id recommendation, which Create
// uses: 19 MiB, 2 passes, 1 lane.
func DefaultParams() Params { return defaultParams }

var defaultParams = Params{Memory: 19 * 1024, Time: 2, Threads: 1}

// Bounds on parameters Open accepts from a file and SetParams accepts.
// The upper bounds keep a hostile file from costing unbounded memory or time
// before its header can be authenticated. Tests lower them (and createParams)
// to stay fast; nothing else changes them.
var (
	minParams    = defaultParams
	maxParams    = Params{Memory: 1 << 20, Time: 16, Threads: 16} // 1 GiB
	createParams = defaultParams
)

func (p Params) check() error {
	if p.Memory < minParams.Memory || p.Memory > maxParams.Memory ||
		p.Time < minParams.Time || p.Time > maxParams.Time ||
		p.Threads < minParams.Threads || p.Threads > maxParams.Threads ||
		p.Memory < 8*uint32(p.Threads) {
		return fmt.Errorf("%w: %+v", ErrParams, p)
	}
	return nil
}

// Data is the content of a key store.
type Data struct {
	ServerURL string
	AccountID string
	DeviceID  string
	// DeviceKey is the device's private key: *ecdsa.PrivateKey on P-256, or
	// ed25519.PrivateKey. Stored as PKCS#8. Nil until the device enrolls.
	DeviceKey crypto.Signer
	// DeviceCertPEM is the device certificate issued by the deployment CA.
	DeviceCertPEM []byte
	SessionToken  string
	// Secrets holds other client state by name (end-to-end identity keys,
	// ratchet sessions); the key store does not interpret it.
	Secrets map[string][]byte
}

// payload is Data as stored inside the encryption.
type payload struct {
	ServerURL     string            `json:"server_url,omitempty"`
	AccountID     string            `json:"account_id,omitempty"`
	DeviceID      string            `json:"device_id,omitempty"`
	DeviceKey     []byte            `json:"device_key,omitempty"` // PKCS#8 DER
	DeviceCertPEM []byte            `json:"device_cert_pem,omitempty"`
	SessionToken  string            `json:"session_token,omitempty"`
	Secrets       map[string][]byte `json:"secrets,omitempty"`
}

// Store is an open key store. Save, Secret and Update may be called from
// several goroutines at once; other reads and writes of Data may not run
// beside them.
type Store struct {
	// Data is the content, written by Save.
	Data Data

	// mu serialises Save with the changes made through Update and the
	// reads made through Secret, so that a save never encodes a map
	// another goroutine is writing.
	mu sync.Mutex

	path       string
	passphrase []byte
	params     Params
	// salt and derived (argon2id's 64 bytes for salt, passphrase and
	// params) are reused by every save until one of those changes.
	salt, derived []byte
}

// Create makes a new, empty key store at path, protected by passphrase,
// creating its directory (0700) if needed. It fails if path exists.
func Create(path string, passphrase []byte) (*Store, error) {
	if len(passphrase) == 0 {
		return nil, ErrEmptyPassphrase
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("keystore: create directory: %w", err)
	}
	s := &Store{path: path, passphrase: bytes.Clone(passphrase), params: createParams}
	file, err := s.seal()
	if err != nil {
		return nil, err
	}
	tmp, err := writeTemp(path, file)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp)
	// A hard link fails if path exists, so Create never replaces a store.
	if err := os.Link(tmp, path); err != nil {
		return nil, fmt.Errorf("keystore: create: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	return s, nil
}

// Open reads and decrypts the key store at path. It refuses a file that
// group or others may access. On any error it returns no data.
func Open(path string, passphrase []byte) (*Store, error) {
	if len(passphrase) == 0 {
		return nil, ErrEmptyPassphrase
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keystore: open: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keystore: open: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("keystore: %s is not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v", ErrPermissions, path, st.Mode().Perm())
	}
	file, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("keystore: read: %w", err)
	}
	if len(file) > MaxFileSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrFormat, MaxFileSize)
	}
	data, params, salt, derived, err := open(file, passphrase)
	if err != nil {
		return nil, err
	}
	return &Store{Data: data, path: path, passphrase: bytes.Clone(passphrase), params: params, salt: salt, derived: derived}, nil
}

// Path returns the file the store is saved to.
func (s *Store) Path() string { return s.path }

// Params returns the argon2id parameters the next Save uses.
func (s *Store) Params() Params { return s.params }

// SetParams changes the argon2id parameters for the next Save.
func (s *Store) SetParams(p Params) error {
	if err := p.check(); err != nil {
		return err
	}
	s.params = p
	s.salt, s.derived = nil, nil
	return nil
}

// SetPassphrase changes the passphrase for the next Save.
func (s *Store) SetPassphrase(passphrase []byte) error {
	if len(passphrase) == 0 {
		return ErrEmptyPassphrase
	}
	s.passphrase = bytes.Clone(passphrase)
	s.salt, s.derived = nil, nil
	return nil
}

// Secret returns a copy of the secret called name, and whether there is one.
func (s *Store) Secret(name string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.Data.Secrets[name]
	return bytes.Clone(v), ok
}

// Update runs f on Data with the store's lock held, so that a Save on
// another goroutine never sees the change half made. f must not call Save.
func (s *Store) Update(f func(*Data)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.Data)
}

// Save encrypts Data with a fresh nonce and atomically replaces the
// file: a crash leaves either the old or the new store, never a mix.
// Saves are serialised, so the file holds the last one's Data.
func (s *Store) Save() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	file, err := s.seal()
	if err != nil {
		return err
	}
	tmp, err := writeTemp(s.path, file)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, s.path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("keystore: save: %w", err)
	}
	return syncDir(filepath.Dir(s.path))
}

func (s *Store) seal() ([]byte, error) {
	if err := s.params.check(); err != nil {
		return nil, err
	}
	p := payload{
		ServerURL:     s.Data.ServerURL,
		AccountID:     s.Data.AccountID,
		DeviceID:      s.Data.DeviceID,
		DeviceCertPEM: s.Data.DeviceCertPEM,
		SessionToken:  s.Data.SessionToken,
		Secrets:       s.Data.Secrets,
	}
	if s.Data.DeviceKey != nil {
		if err := checkKey(s.Data.DeviceKey); err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(s.Data.DeviceKey)
		if err != nil {
			return nil, fmt.Errorf("keystore: encode device key: %w", err)
		}
		p.DeviceKey = der
	}
	plaintext, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("keystore: encode: %w", err)
	}

	header := make([]byte, 0, headerSize)
	header = append(header, magic...)
	header = append(header, version)
	header = binary.BigEndian.AppendUint32(header, s.params.Memory)
	header = binary.BigEndian.AppendUint32(header, s.params.Time)
	header = append(header, s.params.Threads)
	if s.derived == nil {
		salt := make([]byte, saltSize)
		if _, err := rand.Read(salt); err != nil {
			return nil, fmt.Errorf("keystore: random: %w", err)
		}
		s.salt, s.derived = salt, argon2.IDKey(s.passphrase, salt, s.params.Time, s.params.Memory, s.params.Threads, 64)
	}
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("keystore: random: %w", err)
	}
	header = append(header, s.salt...)
	header = append(header, nonce...)

	encKey, check := splitKeys(s.derived, header)
	header = append(header, check...)
	aead, err := chacha20poly1305.NewX(encKey)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	if len(header)+len(plaintext)+aead.Overhead() > MaxFileSize {
		return nil, fmt.Errorf("keystore: content larger than %d bytes", MaxFileSize)
	}
	return aead.Seal(header, nonce, plaintext, header), nil
}

// splitKeys returns, from argon2id's 64 bytes, the encryption key and the
// passphrase check over the header bytes before the check field.
func splitKeys(derived, headerBeforeCheck []byte) (encKey, check []byte) {
	mac := hmac.New(sha256.New, derived[32:])
	mac.Write(headerBeforeCheck)
	return derived[:32], mac.Sum(nil)[:checkSize]
}

func open(file, passphrase []byte) (Data, Params, []byte, []byte, error) {
	if len(file) < headerSize+chacha20poly1305.Overhead || string(file[:len(magic)]) != magic {
		return Data{}, Params{}, nil, nil, ErrFormat
	}
	rest := file[len(magic):]
	if rest[0] != version {
		return Data{}, Params{}, nil, nil, fmt.Errorf("%w: %d", ErrVersion, rest[0])
	}
	rest = rest[1:]
	params := Params{
		Memory:  binary.BigEndian.Uint32(rest[0:4]),
		Time:    binary.BigEndian.Uint32(rest[4:8]),
		Threads: rest[8],
	}
	// Check the bounds before running argon2id: the header is not yet
	// authenticated.
	if err := params.check(); err != nil {
		return Data{}, Params{}, nil, nil, err
	}
	rest = rest[9:]
	salt := rest[:saltSize]
	nonce := rest[saltSize : saltSize+chacha20poly1305.NonceSizeX]
	checkStart := headerSize - checkSize
	derived := argon2.IDKey(passphrase, salt, params.Time, params.Memory, params.Threads, 64)
	encKey, check := splitKeys(derived, file[:checkStart])
	if subtle.ConstantTimeCompare(check, file[checkStart:headerSize]) != 1 {
		return Data{}, Params{}, nil, nil, ErrWrongPassphrase
	}
	aead, err := chacha20poly1305.NewX(encKey)
	if err != nil {
		return Data{}, Params{}, nil, nil, fmt.Errorf("keystore: %w", err)
	}
	plaintext, err := aead.Open(nil, nonce, file[headerSize:], file[:headerSize])
	if err != nil {
		return Data{}, Params{}, nil, nil, ErrCorrupt
	}
	data, err := decodePayload(plaintext)
	if err != nil {
		return Data{}, Params{}, nil, nil, err
	}
	return data, params, bytes.Clone(salt), derived, nil
}

func decodePayload(plaintext []byte) (Data, error) {
	dec := json.NewDecoder(bytes.NewReader(plaintext))
	dec.DisallowUnknownFields()
	var p payload
	if err := dec.Decode(&p); err != nil {
		return Data{}, fmt.Errorf("%w: content: %v", ErrCorrupt, err)
	}
	if dec.More() {
		return Data{}, fmt.Errorf("%w: trailing content", ErrCorrupt)
	}
	d := Data{
		ServerURL:     p.ServerURL,
		AccountID:     p.AccountID,
		DeviceID:      p.DeviceID,
		DeviceCertPEM: p.DeviceCertPEM,
		SessionToken:  p.SessionToken,
		Secrets:       p.Secrets,
	}
	if p.DeviceKey != nil {
		k, err := x509.ParsePKCS8PrivateKey(p.DeviceKey)
		if err != nil {
			return Data{}, fmt.Errorf("%w: device key: %v", ErrCorrupt, err)
		}
		signer, ok := k.(crypto.Signer)
		if !ok {
			return Data{}, fmt.Errorf("%w: %T", ErrUnsupportedKey, k)
		}
		if err := checkKey(signer); err != nil {
			return Data{}, err
		}
		d.DeviceKey = signer
	}
	return d, nil
}

func checkKey(k crypto.Signer) error {
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("%w: ECDSA %s", ErrUnsupportedKey, k.Curve.Params().Name)
		}
		return nil
	case ed25519.PrivateKey:
		return nil
	default:
		return fmt.Errorf("%w: %T", ErrUnsupportedKey, k)
	}
}

// writeTemp writes data to a new 0600 file beside path and syncs it.
func writeTemp(path string, data []byte) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("keystore: save: %w", err)
	}
	name := f.Name()
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", fmt.Errorf("keystore: save: %w", err)
	}
	return name, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("keystore: sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, fs.ErrInvalid) {
		return fmt.Errorf("keystore: sync directory: %w", err)
	}
	return nil
}
