package main

import (
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/internal/db"
)

// secretSize is the size of the deployment secret file: exactly this many
// random bytes, nothing else.
const secretSize = identity.SecretSize

// The keys kanald derives from the deployment secret, one HKDF-SHA256
// label each (no salt, 32 bytes). Identity derives its own two (sign-up
// code MAC, organisation key seal) from the same secret.
const (
	labelVAPIDSeal   = "kanal secret: push vapid seal v1"
	labelTokenSeal   = "kanal secret: surveys token key seal v1"
	labelBusMAC      = "kanal secret: bus mac v1"
	labelSecretCheck = "kanal secret: check v1" // recorded in the database to catch a node with another secret
)

// The labels older kanald used with the CA key's PEM as the HKDF secret;
// data sealed under them is sealed again under the deployment secret at
// start (see legacyKeys).
const (
	legacyLabelVAPIDSeal = "kanal push vapid seal v1"
	legacyLabelTokenSeal = "kanal surveys token key seal v1"
)

// secretKeys are the keys derived from the deployment secret, and from the
// legacy master (the CA key's PEM) if this data directory predates the
// secret.
type secretKeys struct {
	secret      []byte // for identity, which derives its own keys
	vapid       []byte
	token       []byte
	bus         []byte
	check       string // hex, stored in the deployment row
	legacy      []byte // the CA key's PEM, or nil
	legacyVAPID []byte
	legacyToken []byte
}

func deriveSecretKeys(secret, legacy []byte) (*secretKeys, error) {
	k := &secretKeys{secret: secret, legacy: legacy}
	for _, d := range []struct {
		master []byte
		label  string
		out    *[]byte
	}{
		{secret, labelVAPIDSeal, &k.vapid}, {secret, labelTokenSeal, &k.token}, {secret, labelBusMAC, &k.bus},
		{legacy, legacyLabelVAPIDSeal, &k.legacyVAPID}, {legacy, legacyLabelTokenSeal, &k.legacyToken},
	} {
		if d.master == nil {
			continue
		}
		key, err := hkdf.Key(sha256.New, d.master, nil, d.label, 32)
		if err != nil {
			return nil, err
		}
		*d.out = key
	}
	check, err := hkdf.Key(sha256.New, secret, nil, labelSecretCheck, 32)
	if err != nil {
		return nil, err
	}
	k.check = hex.EncodeToString(check)
	return k, nil
}

// errSecretMismatch is returned when the secret file is not the one this
// deployment's database recorded.
var errSecretMismatch = errors.New("is not this deployment's secret")

// loadOrCreateSecret reads the deployment secret from path, or creates it
// (32 bytes from crypto/rand, mode 0600) if the file does not exist and
// create is true. Every node of a deployment must hold the same file. A
// file of another size, one that group or others may access, or a
// non-regular file is refused with an error saying which.
func loadOrCreateSecret(path string, create bool) (secret []byte, created bool, err error) {
	secret, err = readSecretFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return secret, false, err
	}
	if !create {
		return nil, false, fmt.Errorf("%s does not exist, but this deployment already has a secret: copy the secret file from another node (the file every node shares)", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("cannot create %s: %w", filepath.Dir(path), err)
	}
	b := make([]byte, secretSize)
	if _, err := rand.Read(b); err != nil {
		return nil, false, err
	}
	// Written to a temporary file and linked into place: a crash leaves no
	// half-written secret, and of two nodes starting at once on a shared
	// directory the second's link fails and it reads the first's secret.
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, false, fmt.Errorf("cannot write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err == nil {
		_, err = f.Write(b)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, false, fmt.Errorf("cannot write %s: %w", path, err)
		}
	} else {
		f.Close()
		return nil, false, fmt.Errorf("cannot write %s: %w", path, err)
	}
	if err := os.Link(tmp, path); errors.Is(err, fs.ErrExist) {
		secret, err := readSecretFile(path)
		return secret, false, err
	} else if err != nil {
		return nil, false, fmt.Errorf("cannot write %s: %w", path, err)
	}
	return b, true, nil
}

func readSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %04o; only kanald's user may read the deployment secret (chmod 600 %s)", path, st.Mode().Perm(), path)
	}
	b, err := io.ReadAll(io.LimitReader(f, secretSize+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	if len(b) != secretSize {
		return nil, fmt.Errorf("%s is %d bytes; a deployment secret is exactly %d random bytes", path, st.Size(), secretSize)
	}
	return b, nil
}

// secretRecorded returns the secret check the deployment recorded, "" if
// none yet.
func secretRecorded(ctx context.Context, d *db.DB) (string, error) {
	var recorded string
	err := d.QueryRow(ctx, `SELECT secret_check FROM deployment WHERE singleton = 1`).Scan(&recorded)
	return recorded, err
}

// checkSecret records the secret's check value on the deployment's first
// start with a secret and afterwards refuses a node whose secret differs:
// it could not open what the others sealed.
func checkSecret(ctx context.Context, d *db.DB, path, check string) error {
	var recorded string
	err := d.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE deployment SET secret_check = $1 WHERE singleton = 1 AND secret_check = ''`, check); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT secret_check FROM deployment WHERE singleton = 1`).Scan(&recorded)
	})
	if err != nil {
		return err
	}
	if recorded != check {
		return fmt.Errorf("%s %w: every node must hold the same secret file", path, errSecretMismatch)
	}
	return nil
}
