package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/mail"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/internal/bus"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/keys/transparency"
	"github.com/kanal-server/kanal/messaging/push"
	"github.com/kanal-server/kanal/vault"
)

// config is kanald's configuration. Flags win over environment variables,
// which win over the defaults.
type config struct {
	Addr              string
	DataDir           string
	DatabaseURL       string
	NATSURL           string
	NATS              bus.Options // TLS and credentials of an external NATS (URL, Name and Logger unset)
	LogLevel          slog.Level
	LogFormat         string
	SMTPURL           string
	MailFrom          string
	CADir             string   // empty: <DataDir>/ca
	LogOrigin         string   // empty: translog.DefaultOrigin of the CA
	LogKeyFile        string   // empty: <CADir>/log.key
	SecretFile        string   // empty: <CADir>/secret
	LogWitnesses      []string // witness verifier keys (C2SP tlog-cosignature)
	LogWitnessQuorum  int
	TrustProxy        bool
	Retention         time.Duration // how long an undelivered envelope is kept
	SendLimit         int           // sends per device per minute
	SendQueue         db.Admission  // when sends are refused as overloaded
	CommitInterval    time.Duration // least time between group commits while writers are concurrent
	SignupLimit       int           // sign-ups of the deployment per hour
	SignupClientLimit int           // sign-ups per client address per hour
	PprofAddr         string        // loopback address for /debug/pprof/; empty: off

	OperatorTokenTTL  time.Duration // lifetime of an operator token kanald issues
	OperatorTokenFile string        // empty: <DataDir>/operator-token

	PublicURL string // empty: http:// and the listening address

	PSPURL           string // empty: no card/wallet provider
	PSPAPIKey        string
	PSPWebhookSecret string

	VaultS3URL       string // empty: vault blobs in <DataDir>/vault
	VaultS3Access    string
	VaultS3Secret    string
	VaultMaxDocument int64 // bytes
	VaultQuota       int64 // bytes per account and quota class

	PushHosts   push.HostList // empty: any public host
	PushSubject string        // empty: mailto: the MailFrom address
	PushCAFile  string
	PushWorkers int // pushes in flight at once on this node

	EID eidConfig // the eID provider (level high); Issuer empty: none
}

// setting describes one configuration value for flags, env and the README.
type setting struct {
	flag, env, def, help string
}

var settings = []setting{
	{"addr", "KANAL_ADDR", "127.0.0.1:8080", "address to listen on"},
	{"data-dir", "KANAL_DATA_DIR", "./kanal-data", "directory for the SQLite database and local state"},
	{"database-url", "KANAL_DATABASE_URL", "", "postgres://… for PostgreSQL; empty for SQLite in the data directory"},
	{"nats-url", "KANAL_NATS_URL", "", "nats://… of a NATS server or cluster; empty for an in-process server"},
	{"nats-ca-file", "KANAL_NATS_CA_FILE", "", "PEM file of the CA certificates the external NATS server's certificate must chain to; set, the connection must use TLS"},
	{"nats-cert-file", "KANAL_NATS_CERT_FILE", "", "PEM client certificate for a NATS server that verifies clients (with KANAL_NATS_KEY_FILE)"},
	{"nats-key-file", "KANAL_NATS_KEY_FILE", "", "PEM key of KANAL_NATS_CERT_FILE (not readable by everyone)"},
	{"nats-user", "KANAL_NATS_USER", "", "NATS user (with KANAL_NATS_PASSWORD); or user:password@ in KANAL_NATS_URL"},
	{"nats-password", "KANAL_NATS_PASSWORD", "", "password of KANAL_NATS_USER"},
	{"nats-nkey-file", "KANAL_NATS_NKEY_FILE", "", "file holding the NATS nkey user seed (SU…), not readable by everyone"},
	{"nats-creds-file", "KANAL_NATS_CREDS_FILE", "", "NATS .creds file (user JWT and seed) for a server in operator mode, not readable by everyone"},
	{"log-level", "KANAL_LOG_LEVEL", "info", "debug, info, warn or error"},
	{"log-format", "KANAL_LOG_FORMAT", "text", "text or json"},
	{"smtp-url", "KANAL_SMTP_URL", "", "smtp://user:pass@host:port[?starttls=required|opportunistic|none] for outgoing mail; empty writes mails to <data-dir>/mail"},
	{"mail-from", "KANAL_MAIL_FROM", "kanal <noreply@localhost>", "sender of kanal's mails"},
	{"operator-token-file", "KANAL_OPERATOR_TOKEN_FILE", "", "file (mode 0600) the operator token is written to at the first start and by kanald operator reset; empty for <data-dir>/operator-token"},
	{"operator-token-ttl", "KANAL_OPERATOR_TOKEN_TTL", "2160h", "how long an operator token works (1h to 8760h); rotate it with kanald operator reset"},
	{"ca-dir", "KANAL_CA_DIR", "", "directory of the deployment CA (ca.pem, ca.key); empty for <data-dir>/ca. All nodes of a deployment must share it"},
	{"log-origin", "KANAL_LOG_ORIGIN", "", "origin (name) of the transparency log in its checkpoints; empty for kanal/<first 16 hex digits of the SHA-256 of the CA certificate>"},
	{"log-key-file", "KANAL_LOG_KEY_FILE", "", "the transparency log's signing key (note key, mode 0600), created at the first start; empty for <ca-dir>/log.key. All nodes of a deployment must share it"},
	{"log-witnesses", "KANAL_LOG_WITNESSES", "", "comma-separated verifier keys (name+keyid+base64, from 'kanal witness init') of the witnesses whose cosignatures of the transparency log's checkpoints kanald stores and serves"},
	{"log-witness-quorum", "KANAL_LOG_WITNESS_QUORUM", "", "how many witness cosignatures a checkpoint needs to be served at /v1/log/witness/checkpoint (0 to the number of witnesses); empty: 1 with witnesses, 0 without"},
	{"secret-file", "KANAL_SECRET_FILE", "", "the deployment secret (exactly 32 random bytes, mode 0600) from which the keys sealing the VAPID key, survey token keys and organisation keys and the bus key are derived, created at the first start; empty for <ca-dir>/secret (inside the data directory by default). All nodes of a deployment must share it; it is not the CA key"},
	{"trust-proxy", "KANAL_TRUST_PROXY", "false", "true behind a reverse proxy that sets X-Forwarded-For (used for login and sign-up throttling)"},
	{"pprof-addr", "KANAL_PPROF_ADDR", "", "loopback address such as 127.0.0.1:6060 on which Go's profiling endpoints (/debug/pprof/) are served; empty: off"},
	{"send-limit", "KANAL_SEND_LIMIT", "600", "sends one device may make per minute (1 to 100000); a council device that sends announcements one by one needs more"},
	{"send-queue-delay", "KANAL_SEND_QUEUE_DELAY", "2s", "sends are refused (503, Retry-After) while more are in flight than the node answers in this long, or the group commit holds more than it commits in this long, by their measured rates (at least 256 are always taken); 0 to 60s, 0 refuses none"},
	{"commit-interval", "KANAL_COMMIT_INTERVAL", "5ms", "least time between the starts of two group commits while writes are concurrent: a commit of a few writes waits up to this long for more, which under a moderate load costs the server and its database much less per write for a few milliseconds of latency; a lone writer and a busy server never wait. 0 to 20ms, 0 never waits"},
	{"send-queue-max", "KANAL_SEND_QUEUE_MAX", "0", "a fixed bound on the sends in flight and on the writes waiting in the group commit beyond which sends are refused, instead of the measured ones; 0: measured (see KANAL_SEND_QUEUE_DELAY)"},
	{"signup-limit", "KANAL_SIGNUP_LIMIT", "3000", "sign-ups the deployment accepts per hour, counted on all nodes together (1 to 1000000)"},
	{"signup-client-limit", "KANAL_SIGNUP_CLIENT_LIMIT", "30", "sign-ups one client address (an IPv6 /64) may make per hour (1 to 1000000); behind a proxy, needs KANAL_TRUST_PROXY"},
	{"retention", "KANAL_RETENTION", "720h", "how long an undelivered envelope waits in a device's mailbox before it expires (1h to 8760h)"},
	{"public-url", "KANAL_PUBLIC_URL", "", "the URL citizens and mini-apps reach kanald at (https://kanal.example); the OpenID Provider's issuer is it plus /oidc. Empty: http:// and the listening address"},
	{"psp-url", "KANAL_PSP_URL", "", "base URL of the card/wallet payment provider's API; empty: payment requests are paid by bank transfer only"},
	{"psp-api-key", "KANAL_PSP_API_KEY", "", "API key for the payment provider (required with KANAL_PSP_URL)"},
	{"psp-webhook-secret", "KANAL_PSP_WEBHOOK_SECRET", "", "shared secret (at least 32 bytes) the provider signs its webhooks with (required with KANAL_PSP_URL)"},
	{"vault-s3-url", "KANAL_VAULT_S3_URL", "", "https://host[:port]/bucket of an S3-compatible object store for the vault's encrypted documents; empty: <data-dir>/vault"},
	{"vault-s3-access-key", "KANAL_VAULT_S3_ACCESS_KEY", "", "access key of KANAL_VAULT_S3_URL"},
	{"vault-s3-secret-key", "KANAL_VAULT_S3_SECRET_KEY", "", "secret key of KANAL_VAULT_S3_URL"},
	{"vault-max-document", "KANAL_VAULT_MAX_DOCUMENT", "33554432", "largest encrypted document version in bytes (1024 to 1073741824)"},
	{"vault-quota", "KANAL_VAULT_QUOTA", "1073741824", "bytes each account may keep in the vault, per quota class (personal, issued)"},
	{"push-hosts", "KANAL_PUSH_HOSTS", "", "comma-separated push service hosts devices may subscribe with (name, IP address or *.domain); empty allows any public host"},
	{"push-subject", "KANAL_PUSH_SUBJECT", "", "VAPID contact sent to push services, mailto:… or https://…; empty: mailto: the KANAL_MAIL_FROM address"},
	{"push-workers", "KANAL_PUSH_WORKERS", "16", "web pushes in flight at once on this node (1 to 1024); one push service host gets at most half of them"},
	{"push-ca-file", "KANAL_PUSH_CA_FILE", "", "PEM file of extra CA certificates trusted for push services (a private push service, or tests); empty: the system's roots"},
}

// settingError names the setting a bad value came from, so the one line
// kanald prints tells the operator what to fix.
type settingError struct {
	env string
	err error
}

func (e *settingError) Error() string { return e.env + ": " + e.err.Error() }
func (e *settingError) Unwrap() error { return e.err }

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("kanald", flag.ContinueOnError)
	fs.SetOutput(stderr)
	vals := make(map[string]*string, len(settings)+len(eidSettings))
	for _, s := range append(slices.Clone(settings), eidSettings...) {
		def := s.def
		if v := getenv(s.env); v != "" {
			def = v
		}
		vals[s.env] = fs.String(s.flag, def, s.help+" ($"+s.env+")")
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c := &config{
		Addr:        *vals["KANAL_ADDR"],
		DataDir:     *vals["KANAL_DATA_DIR"],
		DatabaseURL: *vals["KANAL_DATABASE_URL"],
		NATSURL:     *vals["KANAL_NATS_URL"],
		LogFormat:   *vals["KANAL_LOG_FORMAT"],
		SMTPURL:     *vals["KANAL_SMTP_URL"],
		MailFrom:    *vals["KANAL_MAIL_FROM"],
		CADir:       *vals["KANAL_CA_DIR"],
		LogOrigin:   *vals["KANAL_LOG_ORIGIN"],
		LogKeyFile:  *vals["KANAL_LOG_KEY_FILE"],
		SecretFile:  *vals["KANAL_SECRET_FILE"],

		PublicURL:        *vals["KANAL_PUBLIC_URL"],
		PSPURL:           *vals["KANAL_PSP_URL"],
		PSPAPIKey:        *vals["KANAL_PSP_API_KEY"],
		PSPWebhookSecret: *vals["KANAL_PSP_WEBHOOK_SECRET"],

		VaultS3URL:    *vals["KANAL_VAULT_S3_URL"],
		VaultS3Access: *vals["KANAL_VAULT_S3_ACCESS_KEY"],
		VaultS3Secret: *vals["KANAL_VAULT_S3_SECRET_KEY"],

		PushSubject: *vals["KANAL_PUSH_SUBJECT"],
		PushCAFile:  *vals["KANAL_PUSH_CA_FILE"],
	}
	if err := checkWitnessSettings(c, *vals["KANAL_LOG_WITNESSES"], *vals["KANAL_LOG_WITNESS_QUORUM"]); err != nil {
		return nil, err
	}
	if err := checkPushSettings(c, *vals["KANAL_PUSH_HOSTS"], *vals["KANAL_PUSH_WORKERS"]); err != nil {
		return nil, err
	}
	r, err := time.ParseDuration(*vals["KANAL_RETENTION"])
	if err != nil || r < time.Hour || r > 365*24*time.Hour {
		return nil, &settingError{"KANAL_RETENTION", fmt.Errorf("%q is not a duration from 1h to 8760h", *vals["KANAL_RETENTION"])}
	}
	c.Retention = r
	ttl, err := time.ParseDuration(*vals["KANAL_OPERATOR_TOKEN_TTL"])
	if err != nil || ttl < identity.MinOperatorTokenTTL || ttl > identity.MaxOperatorTokenTTL {
		return nil, &settingError{"KANAL_OPERATOR_TOKEN_TTL", fmt.Errorf("%q is not a duration from 1h to 8760h", *vals["KANAL_OPERATOR_TOKEN_TTL"])}
	}
	c.OperatorTokenTTL = ttl
	c.OperatorTokenFile = *vals["KANAL_OPERATOR_TOKEN_FILE"]
	if c.SendLimit, err = strconv.Atoi(*vals["KANAL_SEND_LIMIT"]); err != nil || c.SendLimit < 1 || c.SendLimit > 100000 {
		return nil, &settingError{"KANAL_SEND_LIMIT", fmt.Errorf("%q is not a number from 1 to 100000", *vals["KANAL_SEND_LIMIT"])}
	}
	if d, err := time.ParseDuration(*vals["KANAL_SEND_QUEUE_DELAY"]); err != nil || d < 0 || d > time.Minute {
		return nil, &settingError{"KANAL_SEND_QUEUE_DELAY", fmt.Errorf("%q is not a duration from 0 to 60s", *vals["KANAL_SEND_QUEUE_DELAY"])}
	} else {
		c.SendQueue.MaxDelay = d
	}
	if d, err := time.ParseDuration(*vals["KANAL_COMMIT_INTERVAL"]); err != nil || d < 0 || d > 20*time.Millisecond {
		return nil, &settingError{"KANAL_COMMIT_INTERVAL", fmt.Errorf("%q is not a duration from 0 to 20ms", *vals["KANAL_COMMIT_INTERVAL"])}
	} else {
		c.CommitInterval = d
	}
	if c.SendQueue.MaxQueue, err = strconv.Atoi(*vals["KANAL_SEND_QUEUE_MAX"]); err != nil || c.SendQueue.MaxQueue < 0 || c.SendQueue.MaxQueue > 1000000 {
		return nil, &settingError{"KANAL_SEND_QUEUE_MAX", fmt.Errorf("%q is not a number from 0 to 1000000", *vals["KANAL_SEND_QUEUE_MAX"])}
	}
	for _, l := range []struct {
		env string
		v   *int
	}{{"KANAL_SIGNUP_LIMIT", &c.SignupLimit}, {"KANAL_SIGNUP_CLIENT_LIMIT", &c.SignupClientLimit}} {
		if *l.v, err = strconv.Atoi(*vals[l.env]); err != nil || *l.v < 1 || *l.v > 1000000 {
			return nil, &settingError{l.env, fmt.Errorf("%q is not a number from 1 to 1000000", *vals[l.env])}
		}
	}
	if a := *vals["KANAL_PPROF_ADDR"]; a != "" {
		host, _, err := net.SplitHostPort(a)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			return nil, &settingError{"KANAL_PPROF_ADDR", fmt.Errorf("%q is not a loopback host:port (profiles reveal memory; keep them off the network)", a)}
		}
		c.PprofAddr = a
	}
	switch *vals["KANAL_TRUST_PROXY"] {
	case "true", "1", "yes":
		c.TrustProxy = true
	case "false", "0", "no", "":
	default:
		return nil, &settingError{"KANAL_TRUST_PROXY", fmt.Errorf("%q is not true or false", *vals["KANAL_TRUST_PROXY"])}
	}
	if _, err := mail.ParseAddress(c.MailFrom); err != nil {
		return nil, &settingError{"KANAL_MAIL_FROM", fmt.Errorf("%q is not a mail address", c.MailFrom)}
	}
	if c.SMTPURL != "" {
		if _, err := identity.NewSMTPMailer(c.SMTPURL, c.MailFrom); err != nil {
			return nil, &settingError{"KANAL_SMTP_URL", err}
		}
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return nil, &settingError{"KANAL_ADDR", fmt.Errorf("%q is not host:port", c.Addr)}
	}
	if err := checkPSP(c); err != nil {
		return nil, err
	}
	if c.VaultMaxDocument, err = strconv.ParseInt(*vals["KANAL_VAULT_MAX_DOCUMENT"], 10, 64); err != nil || c.VaultMaxDocument < 1024 || c.VaultMaxDocument > 1<<30 {
		return nil, &settingError{"KANAL_VAULT_MAX_DOCUMENT", fmt.Errorf("%q is not a number of bytes from 1024 to 1073741824", *vals["KANAL_VAULT_MAX_DOCUMENT"])}
	}
	if c.VaultQuota, err = strconv.ParseInt(*vals["KANAL_VAULT_QUOTA"], 10, 64); err != nil || c.VaultQuota < c.VaultMaxDocument {
		return nil, &settingError{"KANAL_VAULT_QUOTA", fmt.Errorf("%q is not a number of bytes of at least KANAL_VAULT_MAX_DOCUMENT", *vals["KANAL_VAULT_QUOTA"])}
	}
	if c.VaultS3URL == "" && (c.VaultS3Access != "" || c.VaultS3Secret != "") {
		return nil, &settingError{"KANAL_VAULT_S3_URL", errors.New("required with KANAL_VAULT_S3_ACCESS_KEY and KANAL_VAULT_S3_SECRET_KEY")}
	}
	if c.VaultS3URL != "" {
		o := vault.S3Options{URL: c.VaultS3URL, AccessKey: c.VaultS3Access, SecretKey: c.VaultS3Secret}
		if _, _, err := vault.CheckS3Options(o); err != nil {
			env := "KANAL_VAULT_S3_URL"
			switch {
			case c.VaultS3Access == "" && strings.Contains(err.Error(), "key"):
				env = "KANAL_VAULT_S3_ACCESS_KEY"
			case c.VaultS3Secret == "" && strings.Contains(err.Error(), "key"):
				env = "KANAL_VAULT_S3_SECRET_KEY"
			}
			return nil, &settingError{env, err}
		}
	}
	if c.EID, err = parseEIDConfig(vals); err != nil {
		return nil, err
	}
	if c.DataDir == "" {
		return nil, &settingError{"KANAL_DATA_DIR", errors.New("must not be empty")}
	}
	if c.DatabaseURL != "" {
		if _, _, err := db.ParseURL(c.DatabaseURL); err != nil {
			return nil, &settingError{"KANAL_DATABASE_URL", err}
		}
	}
	if c.NATSURL != "" {
		if err := bus.ValidateURL(c.NATSURL); err != nil {
			return nil, &settingError{"KANAL_NATS_URL", err}
		}
	}
	c.NATS = bus.Options{URL: c.NATSURL,
		CAFile: *vals["KANAL_NATS_CA_FILE"], CertFile: *vals["KANAL_NATS_CERT_FILE"], KeyFile: *vals["KANAL_NATS_KEY_FILE"],
		User: *vals["KANAL_NATS_USER"], Password: *vals["KANAL_NATS_PASSWORD"],
		NKeyFile: *vals["KANAL_NATS_NKEY_FILE"], CredsFile: *vals["KANAL_NATS_CREDS_FILE"]}
	if err := c.NATS.Check(); err != nil {
		return nil, natsSettingError(c.NATS, err)
	}
	if err := c.LogLevel.UnmarshalText([]byte(*vals["KANAL_LOG_LEVEL"])); err != nil {
		return nil, &settingError{"KANAL_LOG_LEVEL", fmt.Errorf("%q is not debug, info, warn or error", *vals["KANAL_LOG_LEVEL"])}
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return nil, &settingError{"KANAL_LOG_FORMAT", fmt.Errorf("%q is not text or json", c.LogFormat)}
	}
	return c, nil
}

func newLogger(c *config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if strings.EqualFold(c.LogFormat, "json") {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// operatorTokenFile is where kanald writes a new operator token.
func (c *config) operatorTokenFile() string {
	if c.OperatorTokenFile != "" {
		return c.OperatorTokenFile
	}
	return filepath.Join(c.DataDir, "operator-token")
}

// caDir is where the deployment CA lives.
func (c *config) caDir() string {
	if c.CADir != "" {
		return c.CADir
	}
	return filepath.Join(c.DataDir, "ca")
}

// checkWitnessSettings parses the witness keys and the quorum.
func checkWitnessSettings(c *config, keys, quorum string) error {
	for _, k := range strings.Split(keys, ",") {
		if k = strings.TrimSpace(k); k != "" {
			c.LogWitnesses = append(c.LogWitnesses, k)
		}
	}
	switch {
	case quorum != "":
		n, err := strconv.Atoi(quorum)
		if err != nil || n < 0 || n > len(c.LogWitnesses) {
			return &settingError{"KANAL_LOG_WITNESS_QUORUM", fmt.Errorf("%q is not a number from 0 to the number of witnesses (%d)", quorum, len(c.LogWitnesses))}
		}
		c.LogWitnessQuorum = n
	case len(c.LogWitnesses) > 0:
		c.LogWitnessQuorum = 1
	}
	if _, err := transparency.NewWitnessPolicy(c.LogWitnesses, c.LogWitnessQuorum, 0); err != nil {
		return &settingError{"KANAL_LOG_WITNESSES", errors.New(strings.TrimPrefix(err.Error(), "transparency: "))}
	}
	return nil
}

// secretFile is where the deployment secret lives: beside the CA by
// default (in the data directory unless KANAL_CA_DIR moves it), since every
// node of a deployment must derive the same keys.
func (c *config) secretFile() string {
	if c.SecretFile != "" {
		return c.SecretFile
	}
	return filepath.Join(c.caDir(), "secret")
}

// logKeyFile is where the transparency log's key lives: beside the CA by
// default, since every node of a deployment must sign with the same key.
func (c *config) logKeyFile() string {
	if c.LogKeyFile != "" {
		return c.LogKeyFile
	}
	return filepath.Join(c.caDir(), "log.key")
}

// natsSettingError names the setting behind a bus error: the field of a
// bad option, or for a refused connection the setting to look at.
func natsSettingError(o bus.Options, err error) error {
	var oe *bus.OptionError
	if errors.As(err, &oe) {
		return &settingError{natsFieldEnv[oe.Field], err}
	}
	env := "KANAL_NATS_URL"
	switch {
	case errors.Is(err, bus.ErrServerCertificate):
		env = "KANAL_NATS_CA_FILE"
	case errors.Is(err, bus.ErrClientCertificate):
		env = "KANAL_NATS_CERT_FILE"
	case errors.Is(err, bus.ErrCredentials) && o.NKeyFile != "":
		env = "KANAL_NATS_NKEY_FILE"
	case errors.Is(err, bus.ErrCredentials) && o.CredsFile != "":
		env = "KANAL_NATS_CREDS_FILE"
	case errors.Is(err, bus.ErrCredentials) && o.User != "":
		env = "KANAL_NATS_USER"
	case errors.Is(err, bus.ErrCredentials) && !strings.Contains(o.URL, "@"):
		err = fmt.Errorf("%w (set KANAL_NATS_USER and KANAL_NATS_PASSWORD, KANAL_NATS_NKEY_FILE or KANAL_NATS_CREDS_FILE)", err)
	}
	return &settingError{env, err}
}

var natsFieldEnv = map[string]string{
	"URL": "KANAL_NATS_URL", "CAFile": "KANAL_NATS_CA_FILE", "CertFile": "KANAL_NATS_CERT_FILE", "KeyFile": "KANAL_NATS_KEY_FILE",
	"User": "KANAL_NATS_USER", "Password": "KANAL_NATS_PASSWORD", "NKeyFile": "KANAL_NATS_NKEY_FILE", "CredsFile": "KANAL_NATS_CREDS_FILE",
}
