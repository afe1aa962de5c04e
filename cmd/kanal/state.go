package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/identity/keystore"
)

// storeFile is the key store's name inside KANAL_HOME.
const storeFile = "keystore"

// Names under which kanal keeps its own entries in keystore.Data.Secrets.
// Everything secret or account-bound is in the encrypted store, never in a
// plain file beside it.
const (
	secretEmail          = "kanal.email"
	secretSetupToken     = "kanal.setup_token"
	secretSetupExpires   = "kanal.setup_expires"
	secretRefreshToken   = "kanal.refresh_token"
	secretSessionExpires = "kanal.session_expires"
	secretLevel          = "kanal.level"
	secretCA             = "kanal.ca_pem"
	secretIntermediates  = "kanal.intermediates_pem"
	// secretPendingKey is a new device key (PKCS#8 DER) that 'kanal device
	// renew --new-key' has generated and not yet had certified.
	secretPendingKey = "kanal.pending_device_key"
)

// refreshSlack refreshes a session a little before the server would
// refuse it, so a command does not fail half-way.
const refreshSlack = 30 * time.Second

// home returns the directory holding the key store.
func (c *cli) home() (string, error) {
	if h := c.env("KANAL_HOME"); h != "" {
		return h, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("set KANAL_HOME: %w", err)
	}
	return filepath.Join(dir, "kanal"), nil
}

// openStore opens the key store, creating it when create is set and there
// is none yet. A new store's passphrase is asked for twice.
func (c *cli) openStore(create bool) (*keystore.Store, error) {
	home, err := c.home()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(home, storeFile)
	_, statErr := os.Stat(path)
	if errors.Is(statErr, fs.ErrNotExist) {
		if !create {
			return nil, fmt.Errorf("no key store at %s: start with 'kanal register <email>'", path)
		}
		pass, err := c.secret("KANAL_PASSPHRASE", "New passphrase for "+path+": ", true)
		if err != nil {
			return nil, fmt.Errorf("key store passphrase: %w", err)
		}
		st, err := keystore.Create(path, pass)
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	pass, err := c.secret("KANAL_PASSPHRASE", "Passphrase for "+path+": ", false)
	if err != nil {
		return nil, fmt.Errorf("key store passphrase: %w", err)
	}
	st, err := keystore.Open(path, pass)
	if errors.Is(err, keystore.ErrWrongPassphrase) {
		return nil, fmt.Errorf("wrong passphrase for %s", path)
	}
	if err != nil {
		return nil, err
	}
	c.showAlerts(st)
	return st, nil
}

// serverURL picks the server: --server, then KANAL_SERVER, then the one
// the key store was registered with, then the default.
func (c *cli) serverURL(o *opts, st *keystore.Store) string {
	switch {
	case o.server != "":
		return o.server
	case c.env("KANAL_SERVER") != "":
		return c.env("KANAL_SERVER")
	case st != nil && st.Data.ServerURL != "":
		return st.Data.ServerURL
	}
	return defaultServer
}

func (c *cli) api(o *opts, st *keystore.Store) *client.Client {
	return client.New(c.serverURL(o, st), nil)
}

func getSecret(st *keystore.Store, name string) string {
	v, _ := st.Secret(name)
	return string(v)
}

// setSecret changes one secret under the store's lock: the chat saves the
// store from its receiving goroutine while the SDK saves from another.
func setSecret(st *keystore.Store, name, value string) {
	st.Update(func(d *keystore.Data) { putSecret(d, name, value) })
}

func putSecret(d *keystore.Data, name, value string) {
	if value == "" {
		delete(d.Secrets, name)
		return
	}
	if d.Secrets == nil {
		d.Secrets = map[string][]byte{}
	}
	d.Secrets[name] = []byte(value)
}

func getTime(st *keystore.Store, name string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, getSecret(st, name))
	return t
}

func setTime(st *keystore.Store, name string, t time.Time) {
	if t.IsZero() {
		setSecret(st, name, "")
		return
	}
	setSecret(st, name, t.UTC().Format(time.RFC3339Nano))
}

// saveSession keeps a new session and forgets the setup token, which a
// logged-in client no longer needs.
func saveSession(st *keystore.Store, s *identity.SessionResponse) error {
	st.Update(func(d *keystore.Data) {
		d.SessionToken = s.Token
		putSecret(d, secretRefreshToken, s.RefreshToken)
		expires := ""
		if !s.ExpiresAt.IsZero() {
			expires = s.ExpiresAt.UTC().Format(time.RFC3339Nano)
		}
		putSecret(d, secretSessionExpires, expires)
		putSecret(d, secretLevel, s.Level)
		putSecret(d, secretSetupToken, "")
		putSecret(d, secretSetupExpires, "")
	})
	return st.Save()
}

func clearSession(st *keystore.Store) {
	st.Update(func(d *keystore.Data) {
		d.SessionToken = ""
		putSecret(d, secretRefreshToken, "")
		putSecret(d, secretSessionExpires, "")
		putSecret(d, secretLevel, "")
	})
}

var errNotLoggedIn = errors.New("not logged in: run 'kanal login'")

// session returns a client carrying this device's session token, first
// refreshing the session if it has expired or is about to.
func (c *cli) session(ctx context.Context, o *opts, st *keystore.Store) (*client.Client, error) {
	if st.Data.SessionToken == "" {
		return nil, errNotLoggedIn
	}
	api := c.api(o, st)
	exp := getTime(st, secretSessionExpires)
	if refresh := getSecret(st, secretRefreshToken); refresh != "" && !exp.IsZero() && c.now().Add(refreshSlack).After(exp) {
		s, err := api.Refresh(ctx, refresh)
		if err != nil {
			return nil, fmt.Errorf("session expired and could not be refreshed (run 'kanal login'): %w", err)
		}
		if err := saveSession(st, s); err != nil {
			return nil, err
		}
	}
	return api.WithToken(st.Data.SessionToken), nil
}

// openSession opens the key store and returns it with a client carrying
// this device's session, refreshed if needed.
func (c *cli) openSession(ctx context.Context, o *opts) (*keystore.Store, *client.Client, error) {
	st, err := c.openStore(false)
	if err != nil {
		return nil, nil, err
	}
	api, err := c.session(ctx, o, st)
	if err != nil {
		return nil, nil, err
	}
	return st, api, nil
}

// setupOrSession returns a client carrying the session token if there is
// one, else the setup token from 'kanal verify'.
func (c *cli) setupOrSession(ctx context.Context, o *opts, st *keystore.Store) (*client.Client, bool, error) {
	if st.Data.SessionToken != "" {
		api, err := c.session(ctx, o, st)
		return api, true, err
	}
	if tok := getSecret(st, secretSetupToken); tok != "" {
		if exp := getTime(st, secretSetupExpires); !exp.IsZero() && c.now().After(exp) {
			return nil, false, errors.New("the setup token has expired: run 'kanal register' and 'kanal verify' again")
		}
		return c.api(o, st).WithToken(tok), false, nil
	}
	return nil, false, errors.New("no setup token or session: run 'kanal verify <code>' or 'kanal login'")
}
