package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kanal-server/kanal/identity"
	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/messaging/client"
)

// A provisioned broadcast kept for later runs (-keep DIR). Provisioning is
// the API's work for each follower — sign-up, mailed code, enrolment with a
// certificate and a transparency-log entry, login, follow — about 7 ms of
// kanald CPU a device: 50,000 followers take many minutes before the one
// post a run measures. With -keep the first run provisions into DIR (the
// nodes' data directories, the CA, and keep.json with every device's id,
// key and session) and leaves it there; a later run with the same -keep
// and -devices starts kanald on those data directories and goes straight
// to opening the streams and posting. On PostgreSQL the run's schema is
// kept too: keep.json names it and the database it lives in, and a later
// run must name the same database in -database-url (the schema stays
// until the operator drops it, or the database). Sessions live an hour
// (identity.SessionLifetime): a device whose session is older than
// keepRelogin logs in again with its kept key before its stream opens.
//
// A kept directory holds device keys and sessions of a bench deployment
// and nothing else; it is written with mode 0600 and is the operator's to
// remove.

// keepFile is the name of the device list in a -keep directory.
const keepFile = "keep.json"

// keepRelogin is the age past which a kept session is renewed: the run
// that follows must not outlive it (the stream's session recheck would
// close it).
const keepRelogin = 30 * time.Minute

// keepLoginTries is how often a kept session's renewal is tried.
const keepLoginTries = 5

type keptDevice struct {
	N       int       `json:"n"`
	Email   string    `json:"email"`
	Account string    `json:"account"`
	ID      string    `json:"id"`
	Key     []byte    `json:"key"` // PKCS #8
	Cert    []byte    `json:"cert,omitempty"`
	Token   string    `json:"token"`
	Login   time.Time `json:"login"`
}

type kept struct {
	RunID string `json:"run_id"`
	// Database and Schema are where a PostgreSQL deployment lives (the
	// database's name in -database-url, the schema the nodes use); both
	// empty for SQLite, whose database is in the first node's directory.
	Database  string       `json:"database,omitempty"`
	Schema    string       `json:"schema,omitempty"`
	Org       string       `json:"org"`
	CA        string       `json:"ca"`
	Council   keptDevice   `json:"council"`
	Followers []keptDevice `json:"followers"`
}

// keepDirs are node i's data directory and the CA directory inside a
// -keep directory.
func keepDirs(dir string, i int) (data, ca string) {
	return filepath.Join(dir, fmt.Sprintf("node%d", i)), filepath.Join(dir, "ca")
}

// databaseName is the database a postgres:// URL names.
func databaseName(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(u.Path, "/")
}

// checkKeptEngine refuses a kept deployment on another engine or in
// another database than the run's flags name.
func checkKeptEngine(k *kept, dir, dbURL string) error {
	switch {
	case k.Schema == "" && dbURL != "":
		return fmt.Errorf("-keep %s holds a SQLite deployment; run it without -database-url", dir)
	case k.Schema != "" && dbURL == "":
		return fmt.Errorf("-keep %s holds a PostgreSQL deployment (schema %s of database %s); run it with -database-url", dir, k.Schema, k.Database)
	case k.Schema != "" && databaseName(dbURL) != k.Database:
		return fmt.Errorf("-keep %s lives in database %q; -database-url names %q", dir, k.Database, databaseName(dbURL))
	}
	return nil
}

// loadKept reads a -keep directory's device list; nil without error when
// the directory holds none yet (the run provisions and keeps).
func loadKept(dir string) (*kept, error) {
	b, err := os.ReadFile(filepath.Join(dir, keepFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var k kept
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("-keep %s: %w", dir, err)
	}
	return &k, nil
}

func keepDevice(d *device, login time.Time) (keptDevice, error) {
	der, err := x509.MarshalPKCS8PrivateKey(d.key)
	if err != nil {
		return keptDevice{}, err
	}
	return keptDevice{N: d.n, Email: d.email, Account: d.account, ID: d.id, Key: der, Token: d.token, Login: login}, nil
}

// saveKept writes the council and its followers after provisioning.
func (r *runner) saveKept(org string, council *device, followers []*device, login time.Time) error {
	k := kept{RunID: r.runID, Org: org}
	if r.cl.pgApp != "" {
		k.Database, k.Schema = databaseName(r.o.databaseURL), r.cl.pgApp
	}
	if ca := r.caPEM.Load(); ca != nil {
		k.CA = *ca
	}
	var err error
	if k.Council, err = keepDevice(council, login); err != nil {
		return err
	}
	k.Council.Cert = council.cert
	for _, d := range followers {
		kd, err := keepDevice(d, login)
		if err != nil {
			return err
		}
		k.Followers = append(k.Followers, kd)
	}
	if err := r.writeKept(&k); err != nil {
		return err
	}
	r.cl.keptPG.Store(true) // the schema now outlives the run
	return nil
}

func (r *runner) writeKept(k *kept) error {
	b, err := json.Marshal(k)
	if err != nil {
		return err
	}
	tmp := filepath.Join(r.o.keep, keepFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(r.o.keep, keepFile))
}

// restoreKept turns the kept devices back into devices of this run: the
// council with its SDK, the followers with what a stream needs (the first
// connected of them with a session younger than keepRelogin, logging in
// again where it is older). The kept file is rewritten with new sessions.
func (r *runner) restoreKept(ctx context.Context, k *kept, connected int) (council *device, followers []*device, err error) {
	if len(k.Followers) != r.o.devices {
		return nil, nil, fmt.Errorf("-keep %s holds %d followers; run it with -devices %d (or keep another directory)", r.o.keep, len(k.Followers), len(k.Followers))
	}
	r.runID = k.RunID
	r.caPEM.Store(&k.CA)
	blk, _ := pem.Decode([]byte(k.CA))
	if blk == nil {
		return nil, nil, fmt.Errorf("-keep %s: no CA certificate", r.o.keep)
	}
	ca, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	restore := func(kd *keptDevice) (*device, error) {
		key, err := x509.ParsePKCS8PrivateKey(kd.Key)
		if err != nil {
			return nil, err
		}
		ek, ok := key.(*ecdsa.PrivateKey)
		if !ok {
			return nil, errors.New("kept device key is not ECDSA")
		}
		d := &device{n: kd.N, email: kd.Email, account: kd.Account, id: kd.ID, key: ek, token: kd.Token, roots: roots,
			base: r.cl.urls[kd.N%len(r.cl.urls)], hc: r.net.client(), synced: make(chan struct{}), hello: make(chan string, 1),
			pending: map[string]chan error{}, seen: r.seenMap()}
		d.markSynced = sync.OnceFunc(func() { close(d.synced) })
		return d, nil
	}
	now := time.Now()
	start := now
	cpu0, _ := r.serverSample()
	var relogged atomic.Int64
	relogin := func(kd *keptDevice, d *device) error {
		if now.Sub(kd.Login) < keepRelogin {
			return nil
		}
		// A login that fails is tried again, as a client would: one
		// refused database connection on a loaded machine must not end
		// a run that renews tens of thousands of sessions.
		var sess *identity.SessionResponse
		var err error
		for try := range keepLoginTries {
			if try > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(time.Duration(try) * time.Second):
				}
			}
			if sess, err = idclient.New(d.base, d.hc).Login(ctx, d.id, d.key, ""); err == nil {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("log in kept device %s: %w", d.id, err)
		}
		d.token, kd.Token, kd.Login = sess.Token, sess.Token, now
		relogged.Add(1)
		return nil
	}
	if council, err = restore(&k.Council); err != nil {
		return nil, nil, err
	}
	council.cert = k.Council.Cert
	if err := relogin(&k.Council, council); err != nil {
		return nil, nil, err
	}
	council.ident = idclient.New(council.base, council.hc).WithToken(council.token)
	council.sdk, err = client.New(client.Options{BaseURL: council.base, HTTPClient: council.hc, Token: council.token,
		AccountID: council.account, DeviceID: council.id, DeviceKey: council.key, DeviceCertificate: council.cert,
		CA: ca, Store: client.NewMemoryStore()})
	if err != nil {
		return nil, nil, err
	}
	followers = make([]*device, len(k.Followers))
	for i := range k.Followers {
		if followers[i], err = restore(&k.Followers[i]); err != nil {
			return nil, nil, err
		}
	}
	// Only the followers that open a stream need a live session.
	err = parallel(ctx, min(connected, len(followers)), max(r.o.provisionWorkers, 1), func(i int) error {
		return relogin(&k.Followers[i], followers[i])
	})
	if err != nil {
		return nil, nil, err
	}
	if n := relogged.Load(); n > 0 {
		took := time.Since(start)
		cpu1, _ := r.serverSample()
		fmt.Fprintf(r.stderr, "kanal-bench: %d kept sessions renewed in %.1fs, %.2f ms of server CPU each\n",
			n, took.Seconds(), float64((cpu1-cpu0).Microseconds())/1000/float64(n))
		if err := r.writeKept(k); err != nil {
			return nil, nil, err
		}
	}
	return council, followers, nil
}
