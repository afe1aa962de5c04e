package identity

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Message is a plain-text mail to one recipient.
type Message struct {
	To      string
	Subject string
	Body    string
}

// Mailer sends the service's mails: sign-up codes and notices. Send may
// be called concurrently.
type Mailer interface {
	Send(ctx context.Context, m Message) error
}

// formatMessage renders m as an RFC 5322 message with CRLF line endings,
// a quoted-printable UTF-8 body and an encoded subject. Addresses are
// checked before they reach a header: valid UTF-8 (RFC 6532) without
// control characters, line breaks among them.
func formatMessage(from string, m Message, now time.Time, id string) ([]byte, error) {
	for _, a := range []string{from, m.To} {
		if !utf8.ValidString(a) || strings.ContainsFunc(a, unicode.IsControl) {
			return nil, errors.New("identity: mail: address is not UTF-8 text (control character or invalid byte)")
		}
	}
	var b bytes.Buffer
	h := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	h("From", from)
	h("To", m.To)
	h("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	h("Date", now.Format(time.RFC1123Z))
	h("Message-ID", "<"+id+">")
	h("MIME-Version", "1.0")
	h("Content-Type", `text/plain; charset="utf-8"`)
	h("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	body := strings.ReplaceAll(strings.ReplaceAll(m.Body, "\r\n", "\n"), "\n", "\r\n")
	if _, err := qp.Write([]byte(body)); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func messageID(r []byte, from string) string {
	domain := "kanal.invalid"
	if a, err := mail.ParseAddress(from); err == nil {
		if _, d, ok := strings.Cut(a.Address, "@"); ok {
			domain = d
		}
	}
	return idEncoding.EncodeToString(r) + "@" + domain
}

// FileMailer writes each message as an RFC 5322 file (mode 0600) into Dir.
// It is the default when no SMTP server is configured: an operator reads
// the codes from disk during a trial. Files are named so that they sort by
// time.
type FileMailer struct {
	Dir  string
	From string
	Now  func() time.Time // nil: time.Now
	// Written, if set, is told each file's path (never the content).
	Written func(path string)
}

// Send writes m to a new file.
func (f *FileMailer) Send(_ context.Context, m Message) error {
	now := time.Now
	if f.Now != nil {
		now = f.Now
	}
	t := now().UTC()
	r, err := readRandom(rand.Reader, 8)
	if err != nil {
		return err
	}
	msg, err := formatMessage(f.From, m, t, messageID(r, f.From))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return fmt.Errorf("identity: mail directory: %w", err)
	}
	path := filepath.Join(f.Dir, t.Format("20060102T150405.000000000Z")+"-"+idEncoding.EncodeToString(r)+".eml")
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("identity: write mail: %w", err)
	}
	if _, err := fh.Write(msg); err != nil {
		fh.Close()
		return fmt.Errorf("identity: write mail: %w", err)
	}
	if err := fh.Close(); err != nil {
		return fmt.Errorf("identity: write mail: %w", err)
	}
	if f.Written != nil {
		f.Written(path)
	}
	return nil
}

// STARTTLS modes of the SMTP mailer, from the URL's starttls parameter.
const (
	StartTLSOpportunistic = "opportunistic" // default: upgrade if offered
	StartTLSRequired      = "required"
	StartTLSNone          = "none" // only for a relay on the same host
)

// SMTPMailer sends mail through an SMTP server named by a URL:
// smtp://user:pass@host:port?starttls=required|opportunistic|none.
// Credentials are sent only over TLS or to a server on the loopback
// interface (net/smtp's PLAIN rule).
type SMTPMailer struct {
	addr     string
	host     string
	user     string
	pass     string
	startTLS string
	from     string
	// TLSConfig, if set, is used for STARTTLS (tests set RootCAs).
	TLSConfig *tls.Config
	Now       func() time.Time
	// Timeout bounds one delivery; zero means 30 seconds.
	Timeout time.Duration
}

// NewSMTPMailer parses rawURL (see SMTPMailer). from is the envelope and
// header sender, e.g. "kanal <noreply@stadt.example>".
func NewSMTPMailer(rawURL, from string) (*SMTPMailer, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, errors.New("cannot parse SMTP URL")
	}
	if u.Scheme != "smtp" {
		return nil, fmt.Errorf("unsupported SMTP URL scheme %q (want smtp://user:pass@host:port)", u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, errors.New("SMTP URL names no host")
	}
	port := u.Port()
	if port == "" {
		port = "587"
	}
	m := &SMTPMailer{addr: net.JoinHostPort(u.Hostname(), port), host: u.Hostname(), from: from, startTLS: StartTLSOpportunistic}
	if u.User != nil {
		m.user = u.User.Username()
		m.pass, _ = u.User.Password()
	}
	if v := u.Query().Get("starttls"); v != "" {
		switch v {
		case StartTLSOpportunistic, StartTLSRequired, StartTLSNone:
			m.startTLS = v
		default:
			return nil, fmt.Errorf("SMTP URL: starttls=%q is not required, opportunistic or none", v)
		}
	}
	if _, err := mail.ParseAddress(from); err != nil {
		return nil, fmt.Errorf("mail sender %q is not an address", from)
	}
	return m, nil
}

// Send delivers m.
func (s *SMTPMailer) Send(ctx context.Context, m Message) error {
	timeout := s.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	r, err := readRandom(rand.Reader, 8)
	if err != nil {
		return err
	}
	msg, err := formatMessage(s.from, m, now().UTC(), messageID(r, s.from))
	if err != nil {
		return err
	}
	sender, err := mail.ParseAddress(s.from)
	if err != nil {
		return err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("identity: smtp dial: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	c, err := smtp.NewClient(conn, s.host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("identity: smtp: %w", err)
	}
	defer c.Close()
	if s.startTLS != StartTLSNone {
		if ok, _ := c.Extension("STARTTLS"); ok {
			cfg := &tls.Config{ServerName: s.host, MinVersion: tls.VersionTLS12}
			if s.TLSConfig != nil {
				cfg = s.TLSConfig.Clone()
			}
			if err := c.StartTLS(cfg); err != nil {
				return fmt.Errorf("identity: smtp starttls: %w", err)
			}
		} else if s.startTLS == StartTLSRequired {
			return errors.New("identity: smtp: server does not offer STARTTLS")
		}
	}
	if s.user != "" {
		if err := c.Auth(smtp.PlainAuth("", s.user, s.pass, s.host)); err != nil {
			return fmt.Errorf("identity: smtp auth: %w", err)
		}
	}
	if err := c.Mail(sender.Address); err != nil {
		return fmt.Errorf("identity: smtp MAIL: %w", err)
	}
	if err := c.Rcpt(m.To); err != nil {
		return fmt.Errorf("identity: smtp RCPT: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("identity: smtp DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("identity: smtp DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("identity: smtp DATA: %w", err)
	}
	return c.Quit()
}
