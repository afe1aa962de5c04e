package bus

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Errors Open wraps when the server is reached but the two sides do not
// trust each other, so that kanald can name the setting to fix.
var (
	// ErrCredentials: the server refused kanald's credentials, or wanted
	// some and got none.
	ErrCredentials = errors.New("the server refused the credentials")
	// ErrServerCertificate: the server's certificate does not chain to
	// the configured CA (or the system's roots) or names another host.
	ErrServerCertificate = errors.New("the server's certificate is not trusted")
	// ErrClientCertificate: the server wants a client certificate it
	// trusts, and got none or another.
	ErrClientCertificate = errors.New("the server refused the client certificate (or wanted one)")
)

// OptionError names the Options field a bad value came from.
type OptionError struct {
	Field string // CAFile, CertFile, KeyFile, User, Password, NKeyFile, CredsFile or URL
	Err   error
}

func (e *OptionError) Error() string { return e.Err.Error() }
func (e *OptionError) Unwrap() error { return e.Err }

func optErr(field, format string, args ...any) error {
	return &OptionError{Field: field, Err: fmt.Errorf(format, args...)}
}

// Check validates the TLS and credential settings without connecting:
// files exist, parse and are not readable by everyone, and at most one
// way of authenticating is chosen. Errors are *OptionError.
func (o Options) Check() error {
	_, err := o.external()
	return err
}

// external turns the TLS and credential settings into NATS options.
func (o Options) external() ([]nats.Option, error) {
	if o.URL == "" {
		// In a fixed order, so the same settings always name the same one.
		for _, f := range []struct{ field, v string }{{"CAFile", o.CAFile}, {"CertFile", o.CertFile}, {"KeyFile", o.KeyFile},
			{"User", o.User}, {"Password", o.Password}, {"NKeyFile", o.NKeyFile}, {"CredsFile", o.CredsFile}} {
			if f.v != "" {
				return nil, optErr(f.field, "only for an external NATS server; the embedded one has no listener and needs none")
			}
		}
		return nil, nil
	}
	if err := ValidateURL(o.URL); err != nil {
		return nil, &OptionError{Field: "URL", Err: err}
	}
	var opts []nats.Option

	urlUser := false
	for _, one := range splitURLs(o.URL) {
		if u, err := url.Parse(one); err == nil && u.User != nil {
			urlUser = true
		}
	}
	ways := 0
	for _, set := range []bool{urlUser, o.User != "", o.NKeyFile != "", o.CredsFile != ""} {
		if set {
			ways++
		}
	}
	if urlUser && o.User != "" {
		return nil, optErr("User", "the NATS URL carries a user already; give the user in one place")
	}
	if ways > 1 {
		return nil, optErr("CredsFile", "choose one way to authenticate to NATS: user and password, an nkey seed file or a .creds file")
	}
	switch {
	case o.Password != "" && o.User == "":
		return nil, optErr("Password", "a NATS password needs a user")
	case o.User != "" && o.Password == "":
		return nil, optErr("User", "a NATS user needs a password")
	case o.User != "":
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	case o.NKeyFile != "":
		if err := checkSecretFile(o.NKeyFile); err != nil {
			return nil, &OptionError{Field: "NKeyFile", Err: err}
		}
		seed, err := os.ReadFile(o.NKeyFile)
		if err != nil {
			return nil, optErr("NKeyFile", "cannot read the nkey seed: %v", pathless(err))
		}
		kp, err := nkeys.ParseDecoratedNKey(seed)
		if err != nil {
			return nil, optErr("NKeyFile", "%s holds no nkey seed", o.NKeyFile)
		}
		if _, err := kp.Seed(); err != nil {
			return nil, optErr("NKeyFile", "%s holds a public nkey, not a seed", o.NKeyFile)
		}
		if pub, _ := kp.PublicKey(); !strings.HasPrefix(pub, "U") {
			return nil, optErr("NKeyFile", "%s holds no user nkey seed (SU…)", o.NKeyFile)
		}
		kp.Wipe()
		opt, err := nats.NkeyOptionFromSeed(o.NKeyFile)
		if err != nil {
			return nil, optErr("NKeyFile", "%s: %v", o.NKeyFile, err)
		}
		opts = append(opts, opt)
	case o.CredsFile != "":
		if err := checkSecretFile(o.CredsFile); err != nil {
			return nil, &OptionError{Field: "CredsFile", Err: err}
		}
		b, err := os.ReadFile(o.CredsFile)
		if err != nil {
			return nil, optErr("CredsFile", "cannot read the .creds file: %v", pathless(err))
		}
		if _, err := nkeys.ParseDecoratedUserNKey(b); err != nil || !strings.Contains(string(b), "-----BEGIN NATS USER JWT-----") {
			return nil, optErr("CredsFile", "%s is not a NATS .creds file (user JWT and nkey seed)", o.CredsFile)
		}
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}

	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, optErr("CertFile", "a NATS client certificate needs both the certificate and the key file")
	}
	if o.CAFile != "" || o.CertFile != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if o.CAFile != "" {
			b, err := os.ReadFile(o.CAFile)
			if err != nil {
				return nil, optErr("CAFile", "cannot read the NATS CA file: %v", pathless(err))
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(b) {
				return nil, optErr("CAFile", "%s holds no PEM certificate", o.CAFile)
			}
			cfg.RootCAs = pool
		}
		if o.CertFile != "" {
			if err := checkSecretFile(o.KeyFile); err != nil {
				return nil, &OptionError{Field: "KeyFile", Err: err}
			}
			cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
			if err != nil {
				return nil, optErr("CertFile", "cannot load the NATS client certificate: %v", pathless(err))
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, nats.Secure(cfg))
	}
	return opts, nil
}

// checkSecretFile refuses a credential file everyone on the host may read.
func checkSecretFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("cannot read %s: %v", path, pathless(err))
	}
	if fi.Mode().Perm()&0o007 != 0 {
		return fmt.Errorf("%s is readable by everyone (mode %04o); chmod 600 it", path, fi.Mode().Perm())
	}
	return nil
}

func pathless(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

// connectError says in one line why kanald could not join the bus.
func connectError(raw string, err error) error {
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	var alert tls.AlertError
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked),
		strings.Contains(strings.ToLower(err.Error()), "authorization violation"):
		return fmt.Errorf("NATS at %s: %w: %v", redact(raw), ErrCredentials, err)
	case errors.As(err, &unknown), errors.As(err, &hostname), errors.As(err, &invalid), errors.As(err, &verify):
		return fmt.Errorf("NATS at %s: %w: %v", redact(raw), ErrServerCertificate, err)
	case errors.As(err, &alert) && (alert == 42 || alert == 116), // bad_certificate, certificate_required (QUIC only)
		// Over TCP, crypto/tls reports the server's alert only as text.
		strings.Contains(err.Error(), "remote error: tls: bad certificate"),
		strings.Contains(err.Error(), "remote error: tls: certificate required"),
		// With TLS 1.3 the server checks the client's certificate after
		// the handshake and may just hang up; nats.go says so.
		errors.Is(err, nats.ErrTLS) && strings.Contains(err.Error(), "closed by remote after TLS handshake"):
		return fmt.Errorf("NATS at %s: %w: %v", redact(raw), ErrClientCertificate, err)
	}
	return fmt.Errorf("cannot connect to NATS at %s: %w", redact(raw), err)
}
