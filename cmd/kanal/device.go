package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/identity/keystore"
	mclient "github.com/kanal-server/kanal/messaging/client"
)

// maxPEMInput bounds a certificate or request read from a file or stdin.
const maxPEMInput = 64 << 10

func deviceCommands() []*command {
	keyFlags := func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.keyType, "key", "p256", "device key `type`: p256 or ed25519")
	}
	return []*command{
		{
			name: "device enroll", args: "[--name N] [--key p256|ed25519]", nargs: 0,
			summary: "make this machine the account's first device",
			help: `Generates a device key, keeps it in the key store, and asks the deployment
CA to certify it, with the setup token from 'kanal verify'. The private key
never leaves the key store; the server sees a certificate request signed
with it. To add another device later, use 'kanal device request' on the new
machine and 'kanal device approve' on an enrolled one.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&o.name, "name", "", "device `name` shown in device lists (default: the host name)")
				keyFlags(fs, o)
			},
			run: deviceEnroll,
		},
		{
			name: "device request", args: "[--key p256|ed25519]", nargs: 0,
			summary: "on a new machine: make a device key and print its certificate request",
			help: `Creates the key store if needed, generates this machine's device key and
prints a PEM certificate request signed with it. Take the request to an
enrolled device and run 'kanal device approve' there, then bring the
certificate back to 'kanal device install'.`,
			flags: keyFlags,
			run:   deviceRequest,
		},
		{
			name: "device approve", args: "[--name N] <request-file|->", nargs: 1,
			summary: "on an enrolled device: certify another machine's request, print its certificate",
			help:    `Needs a session of level substantial ('kanal login' with the password); this device signs the approval with its key.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&o.name, "name", "", "the new device's `name`")
			},
			run: deviceApprove,
		},
		{
			name: "device install", args: "<certificate-file|->", nargs: 1,
			summary: "on the new machine: install the certificate 'kanal device approve' printed",
			help: `Checks that the certificate certifies this machine's key and chains to the
deployment CA, then keeps it. 'kanal login' works from here on.`,
			run: deviceInstall,
		},
		{
			name: "device list", args: "", nargs: 0,
			summary: "list the account's devices (* marks this one)",
			run:     deviceList,
		},
		{
			name: "device revoke", args: "<device-id>", nargs: 1,
			summary: "revoke a device: its certificate and sessions stop working at once",
			run:     deviceRevoke,
		},
		{
			name: "device renew", args: "[--device-only] [--new-key p256|ed25519]", nargs: 0,
			summary: "get a fresh certificate for this device, optionally for a new key",
			help: `Signs the renewal with this device's key — a session alone cannot renew a
device. The certificate's level is the session's; with the password
(KANAL_PASSWORD or a prompt) it is substantial. --device-only renews without
the password. With --new-key the device gets a new key of that type: the old
certificate is revoked, every session of this device ends (run 'kanal login'
again), and the account's other devices are told. Renew before the
certificate expires: an expired device must be enrolled anew.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.BoolVar(&o.deviceOnly, "device-only", false, "renew without the password (the certificate keeps the session's level)")
				fs.StringVar(&o.newKey, "new-key", "", "replace the device key with a new one of this `type`: p256 or ed25519")
			},
			run: deviceRenew,
		},
		{
			name: "device show", args: "[--ca]", nargs: 0,
			summary: "print this device's certificate (PEM)",
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.BoolVar(&o.ca, "ca", false, "print the deployment CA certificate received at enrollment instead")
			},
			run: deviceShow,
		},
	}
}

func newDeviceKey(kind string) (crypto.Signer, error) {
	switch kind {
	case "p256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, &usageError{msg: fmt.Sprintf("--key %q: want p256 or ed25519", kind)}
}

func keyKind(k crypto.Signer) string {
	if _, ok := k.(ed25519.PrivateKey); ok {
		return "ed25519"
	}
	return "p256"
}

// pendingKey returns the store's device key, generating and saving one
// first if there is none. The key is saved before the server hears of it:
// if the command is cut off after the server certified it, the key is not
// lost, and running the command again reuses it.
func pendingKey(st *keystore.Store, kind string) (crypto.Signer, error) {
	if st.Data.DeviceKey != nil {
		if keyKind(st.Data.DeviceKey) != kind {
			return nil, fmt.Errorf("the key store already holds a %s device key, not %s", keyKind(st.Data.DeviceKey), kind)
		}
		return st.Data.DeviceKey, nil
	}
	key, err := newDeviceKey(kind)
	if err != nil {
		return nil, err
	}
	st.Data.DeviceKey = key
	if err := st.Save(); err != nil {
		return nil, err
	}
	return key, nil
}

func errAlreadyEnrolled(st *keystore.Store) error {
	return fmt.Errorf("this key store already holds device %s; use another KANAL_HOME for another device", st.Data.DeviceID)
}

func deviceEnroll(ctx context.Context, c *cli, o *opts, _ []string) error {
	if _, err := newDeviceKey(o.keyType); err != nil {
		return err
	}
	st, err := c.openStore(false)
	if err != nil {
		return err
	}
	if st.Data.DeviceID != "" {
		return errAlreadyEnrolled(st)
	}
	api, _, err := c.setupOrSession(ctx, o, st)
	if err != nil {
		return err
	}
	// The CA is checked before the setup token is spent on a server that
	// is not the deployment the citizen was given the fingerprint of.
	dir, err := api.DirectoryCA(ctx)
	if err != nil {
		return err
	}
	if err := checkCA(st, dir.Certificate, c.env("KANAL_CA_FINGERPRINT")); err != nil {
		return err
	}
	name := o.name
	if name == "" {
		name, _ = os.Hostname()
	}
	if name == "" {
		name = "kanal CLI"
	}
	key, err := pendingKey(st, o.keyType)
	if err != nil {
		return err
	}
	res, err := api.EnrollDevice(ctx, name, key)
	if err != nil {
		if client.IsProblem(err, string(identity.TypeInvalidToken)) || client.StatusOf(err) == 403 {
			return fmt.Errorf("%w; to add another device to an account, run 'kanal device request' here and 'kanal device approve' on an enrolled device", err)
		}
		return err
	}
	if err := keepCertificate(st, key, res.Certificate, res.CA, res.Intermediates, c.env("KANAL_CA_FINGERPRINT")); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Enrolled device %s (%q, %s key), certificate level %s.\n", st.Data.DeviceID, name, o.keyType, res.Level)
	if res.Level == identity.LevelLow {
		// The server caps a session's level at the certificate's.
		fmt.Fprintln(c.stdout, "The account has no password yet: for level substantial run 'kanal password', 'kanal login --device-only' and 'kanal device renew'.")
	}
	fmt.Fprintln(c.stdout, "Next: kanal login")
	return nil
}

// keepCertificate checks that certPEM certifies key and chains to caPEM,
// and stores it with the ids it names.
func keepCertificate(st *keystore.Store, key crypto.Signer, certPEM, caPEM string, intermediates []string, pin string) error {
	if err := checkCA(st, caPEM, pin); err != nil {
		return err
	}
	id, err := checkDeviceCert(key, []byte(certPEM), []byte(caPEM), intermediates)
	if err != nil {
		return err
	}
	if st.Data.AccountID != "" && st.Data.AccountID != id.AccountID {
		return fmt.Errorf("the certificate names account %s, this key store account %s", id.AccountID, st.Data.AccountID)
	}
	st.Data.AccountID = id.AccountID
	st.Data.DeviceID = id.DeviceID
	st.Data.DeviceCertPEM = []byte(certPEM)
	setSecret(st, secretCA, caPEM)
	setSecret(st, secretIntermediates, strings.Join(intermediates, ""))
	return st.Save()
}

// checkCA refuses a deployment CA other than the one this key store was
// enrolled under (trust on first use), and, at any enrolment, one whose
// SHA-256 fingerprint is not pin (KANAL_CA_FINGERPRINT: the fingerprint
// the city publishes, hex with or without colons; docs/security.md).
func checkCA(st *keystore.Store, caPEM, pin string) error {
	der, err := pemBlock([]byte(caPEM), "CERTIFICATE")
	if err != nil {
		return fmt.Errorf("CA certificate: %w", err)
	}
	if pin != "" {
		want, err := hex.DecodeString(strings.NewReplacer(":", "", " ", "").Replace(strings.TrimSpace(pin)))
		if err != nil || len(want) != sha256.Size {
			return errors.New("KANAL_CA_FINGERPRINT is not a SHA-256 fingerprint (64 hex digits, colons allowed)")
		}
		if got := sha256.Sum256(der); subtle.ConstantTimeCompare(got[:], want) != 1 {
			return fmt.Errorf("the server's CA has fingerprint %X, not the KANAL_CA_FINGERPRINT %X you were given: this is not the deployment you meant; nothing was stored", got[:], want)
		}
	}
	if old := getSecret(st, secretCA); old != "" {
		oldDER, err := pemBlock([]byte(old), "CERTIFICATE")
		if err == nil && !bytes.Equal(oldDER, der) {
			return errors.New("the server presents another CA than the one this device was enrolled under; refused, nothing was stored (a new deployment needs a new KANAL_HOME)")
		}
	}
	return nil
}

// checkDeviceCert verifies a device certificate offline, as any peer
// would: it must chain to the CA and certify exactly key.
func checkDeviceCert(key crypto.Signer, certPEM, caPEM []byte, intermediates []string) (ca.DeviceIdentity, error) {
	certDER, err := pemBlock(certPEM, "CERTIFICATE")
	if err != nil {
		return ca.DeviceIdentity{}, fmt.Errorf("device certificate: %w", err)
	}
	caDER, err := pemBlock(caPEM, "CERTIFICATE")
	if err != nil {
		return ca.DeviceIdentity{}, fmt.Errorf("CA certificate: %w", err)
	}
	root, err := x509.ParseCertificate(caDER)
	if err != nil {
		return ca.DeviceIdentity{}, fmt.Errorf("CA certificate: %w", err)
	}
	inters, err := ca.ParseCertificatesPEM([]byte(strings.Join(intermediates, "")))
	if err != nil {
		return ca.DeviceIdentity{}, fmt.Errorf("intermediate certificates: %w", err)
	}
	roots, err := ca.TrustPool(root, inters)
	if err != nil {
		return ca.DeviceIdentity{}, err
	}
	id, err := ca.VerifyDevice(certDER, roots, time.Now())
	if err != nil {
		return ca.DeviceIdentity{}, fmt.Errorf("device certificate: %w", err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(id.PublicKey) {
		return ca.DeviceIdentity{}, errors.New("the certificate is for another key than this device's")
	}
	return id, nil
}

func pemBlock(data []byte, typ string) ([]byte, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != typ {
		return nil, fmt.Errorf("want a PEM %s", typ)
	}
	return b.Bytes, nil
}

func deviceRequest(ctx context.Context, c *cli, o *opts, _ []string) error {
	if _, err := newDeviceKey(o.keyType); err != nil {
		return err
	}
	st, err := c.openStore(true)
	if err != nil {
		return err
	}
	if st.Data.DeviceID != "" {
		return errAlreadyEnrolled(st)
	}
	key, err := pendingKey(st, o.keyType)
	if err != nil {
		return err
	}
	if st.Data.ServerURL == "" {
		st.Data.ServerURL = c.serverURL(o, st)
		if err := st.Save(); err != nil {
			return err
		}
	}
	csr, err := client.CertificateRequest(key)
	if err != nil {
		return err
	}
	fp, err := client.KeyFingerprint(key.Public())
	if err != nil {
		return err
	}
	// On stderr, so that the request alone goes to a file.
	fmt.Fprintf(c.stderr, "Key fingerprint %s: 'kanal device approve' prints it too; compare the two before you install.\n", fp)
	return pem.Encode(c.stdout, &pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})
}

// readInput reads a small file, or stdin for "-".
func (c *cli) readInput(name string) ([]byte, error) {
	var r io.Reader
	if name == "-" {
		r = c.stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxPEMInput+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPEMInput {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxPEMInput)
	}
	return b, nil
}

func deviceApprove(ctx context.Context, c *cli, o *opts, args []string) error {
	in, err := c.readInput(args[0])
	if err != nil {
		return err
	}
	csr, fp, err := client.ParseRequest(in)
	if err != nil {
		return fmt.Errorf("%s: %w (from 'kanal device request' or the web app's \"Add this browser\")", args[0], err)
	}
	st, api, err := c.openSession(ctx, o)
	if err != nil {
		return err
	}
	name := o.name
	if name == "" {
		name = "device approved by " + st.Data.DeviceID
	}
	// This device approves the new one with its key; the session alone
	// would not do.
	res, err := api.WithDevice(st.Data.DeviceID, st.Data.DeviceKey).EnrollCSR(ctx, name, csr)
	if err != nil {
		return err
	}
	// This device enrolled it: its monitor expects it in the log.
	if err := mclient.ExpectDevice(mclient.NewKeystoreStore(st), res.DeviceID); err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "Approved device %s (%q), key fingerprint %s. Install this certificate on it ('kanal device install', or paste it into the web app).\n", res.DeviceID, name, fp)
	_, err = io.WriteString(c.stdout, res.Certificate)
	return err
}

func deviceInstall(ctx context.Context, c *cli, o *opts, args []string) error {
	certPEM, err := c.readInput(args[0])
	if err != nil {
		return err
	}
	st, err := c.openStore(false)
	if err != nil {
		return err
	}
	if st.Data.DeviceID != "" {
		return errAlreadyEnrolled(st)
	}
	if st.Data.DeviceKey == nil {
		return errors.New("no device key here: run 'kanal device request' first")
	}
	// The CA comes from the server this key store names; the check that the
	// certificate certifies this machine's key does not depend on trusting it.
	dir, err := c.api(o, st).DirectoryCA(ctx)
	if err != nil {
		return fmt.Errorf("fetch the deployment CA: %w", err)
	}
	if err := keepCertificate(st, st.Data.DeviceKey, string(certPEM), dir.Certificate, dir.Intermediates, c.env("KANAL_CA_FINGERPRINT")); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Installed device %s of account %s.\nNext: kanal login\n", st.Data.DeviceID, st.Data.AccountID)
	return nil
}

func deviceList(ctx context.Context, c *cli, o *opts, _ []string) error {
	st, api, err := c.openSession(ctx, o)
	if err != nil {
		return err
	}
	devs, err := api.Devices(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  DEVICE\tNAME\tLEVEL\tSTATUS\tCERTIFICATE EXPIRES")
	for _, d := range devs {
		mark := " "
		if d.DeviceID == st.Data.DeviceID {
			mark = "*"
		}
		status := d.Status
		if d.RevokedAt != nil {
			status += " " + d.RevokedAt.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s %s\t%s\t%s\t%s\t%s\n", mark, d.DeviceID, oneLine(d.Name), d.Level, status, d.ExpiresAt.Local().Format(time.DateOnly))
	}
	return tw.Flush()
}

func deviceRevoke(ctx context.Context, c *cli, o *opts, args []string) error {
	st, api, err := c.openSession(ctx, o)
	if err != nil {
		return err
	}
	if err := api.RevokeDevice(ctx, args[0]); err != nil {
		return err
	}
	if args[0] == st.Data.DeviceID {
		clearSession(st)
		if err := st.Save(); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "Revoked device %s, which is this one: this key store can no longer log in.\n", args[0])
		return nil
	}
	fmt.Fprintf(c.stdout, "Revoked device %s.\n", args[0])
	return nil
}

func deviceRenew(ctx context.Context, c *cli, o *opts, _ []string) error {
	st, err := c.openStore(false)
	if err != nil {
		return err
	}
	if st.Data.DeviceID == "" {
		return errors.New("no device enrolled here: run 'kanal device enroll'")
	}
	api, err := c.session(ctx, o, st)
	if err != nil {
		return err
	}
	r := client.Renewal{Current: st.Data.DeviceKey}
	if !o.deviceOnly {
		pw, err := c.optionalSecret("KANAL_PASSWORD", "Password (empty: the certificate keeps the session's level): ")
		if err != nil {
			return fmt.Errorf("password: %w", err)
		}
		r.Password = string(pw)
	}
	if o.newKey != "" {
		if r.Next, err = pendingDeviceKey(st, o.newKey); err != nil {
			return err
		}
	}
	res, err := api.Renew(ctx, st.Data.DeviceID, r)
	if err != nil {
		if client.IsProblem(err, string(identity.TypeDeviceExpired)) {
			return fmt.Errorf("%w (here, with a new KANAL_HOME: 'kanal device request'; on a valid device: 'kanal device approve'; here again: 'kanal device install')", err)
		}
		return err
	}
	if r.Next == nil {
		if err := keepCertificate(st, st.Data.DeviceKey, res.Certificate, res.CA, res.Intermediates, c.env("KANAL_CA_FINGERPRINT")); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "Renewed the certificate of device %s (level %s).\n", st.Data.DeviceID, res.Level)
		return nil
	}
	// The server has ended every session of the device; the new key
	// replaces the old one here only once the certificate checks out.
	if _, err := checkDeviceCert(r.Next, []byte(res.Certificate), []byte(res.CA), res.Intermediates); err != nil {
		return err
	}
	st.Data.DeviceKey = r.Next
	setSecret(st, secretPendingKey, "")
	clearSession(st)
	if err := keepCertificate(st, r.Next, res.Certificate, res.CA, res.Intermediates, c.env("KANAL_CA_FINGERPRINT")); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Changed the key of device %s to a new %s key (certificate level %s). Its sessions have ended: run 'kanal login'.\n",
		st.Data.DeviceID, o.newKey, res.Level)
	return nil
}

// pendingDeviceKey returns the new device key a key change is for,
// generating and saving it first if there is none: if the command is cut
// off after the server certified the key, the key is not lost.
func pendingDeviceKey(st *keystore.Store, kind string) (crypto.Signer, error) {
	if der := getSecret(st, secretPendingKey); der != "" {
		k, err := x509.ParsePKCS8PrivateKey([]byte(der))
		if signer, ok := k.(crypto.Signer); err == nil && ok && keyKind(signer) == kind {
			return signer, nil
		}
	}
	key, err := newDeviceKey(kind)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	setSecret(st, secretPendingKey, string(der))
	if err := st.Save(); err != nil {
		return nil, err
	}
	return key, nil
}

func deviceShow(ctx context.Context, c *cli, o *opts, _ []string) error {
	st, err := c.openStore(false)
	if err != nil {
		return err
	}
	if len(st.Data.DeviceCertPEM) == 0 {
		return errors.New("no device enrolled here: run 'kanal device enroll'")
	}
	out := st.Data.DeviceCertPEM
	if o.ca {
		out = []byte(getSecret(st, secretCA))
	}
	_, err = c.stdout.Write(out)
	return err
}

// oneLine keeps a server-supplied name from breaking a table.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
