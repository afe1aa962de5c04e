package identity

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"mime"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

type smtpRecorder struct {
	mu        sync.Mutex
	from      string
	rcpt      []string
	data      []byte
	authUser  string
	authCount int
}

type smtpSession struct{ r *smtpRecorder }

func (s *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *smtpSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if user != "kanal" || pass != "s3cret" {
			return errors.New("bad credentials")
		}
		s.r.mu.Lock()
		s.r.authUser, s.r.authCount = user, s.r.authCount+1
		s.r.mu.Unlock()
		return nil
	}), nil
}
func (s *smtpSession) Reset()        {}
func (s *smtpSession) Logout() error { return nil }
func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.r.from = from
	return nil
}
func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.r.rcpt = append(s.r.rcpt, to)
	return nil
}
func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.r.data = b
	return err
}

// TestSMTPMailer delivers a message with PLAIN authentication to a real
// go-smtp server on the loopback interface.
func TestSMTPMailer(t *testing.T) {
	rec := &smtpRecorder{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &smtpSession{r: rec}, nil }))
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	m, err := NewSMTPMailer("smtp://kanal:s3cret@"+ln.Addr().String()+"?starttls=opportunistic", "kanal <noreply@stadt.example>")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Send(context.Background(), Message{To: "anna@example.de", Subject: "Ihr Code – bitte", Body: "Code: 12345678\nGrüße"}); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.authCount != 1 || rec.from != "noreply@stadt.example" || len(rec.rcpt) != 1 || rec.rcpt[0] != "anna@example.de" {
		t.Fatalf("server saw auth=%d from=%q rcpt=%v", rec.authCount, rec.from, rec.rcpt)
	}
	msg, err := mail.ReadMessage(strings.NewReader(string(rec.data)))
	if err != nil {
		t.Fatalf("not RFC 5322: %v\n%s", err, rec.data)
	}
	subj, _ := new(mimeDecoder).decode(msg.Header.Get("Subject"))
	if subj != "Ihr Code – bitte" || msg.Header.Get("Message-Id") == "" || msg.Header.Get("Date") == "" {
		t.Fatalf("headers %v", msg.Header)
	}

	// Wrong credentials and a required STARTTLS the server lacks both fail.
	bad, _ := NewSMTPMailer("smtp://kanal:wrong@"+ln.Addr().String(), "noreply@stadt.example")
	if err := bad.Send(context.Background(), Message{To: "a@example.de", Subject: "x", Body: "x"}); err == nil {
		t.Fatal("wrong SMTP password accepted")
	}
	req, _ := NewSMTPMailer("smtp://"+ln.Addr().String()+"?starttls=required", "noreply@stadt.example")
	if err := req.Send(context.Background(), Message{To: "a@example.de", Subject: "x", Body: "x"}); err == nil {
		t.Fatal("sent without the required STARTTLS")
	}
	for _, u := range []string{"http://x", "smtp://", "smtp://h?starttls=maybe"} {
		if _, err := NewSMTPMailer(u, "noreply@stadt.example"); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
}

type mimeDecoder struct{}

func (mimeDecoder) decode(s string) (string, error) {
	return new(mimeWordDecoder).DecodeHeader(s)
}

// TestFileMailer writes 0600 RFC 5322 files and refuses header injection.
func TestFileMailer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mail")
	var written []string
	f := &FileMailer{Dir: dir, From: "kanal <noreply@localhost>", Now: func() time.Time { return time.Unix(1700000000, 0) },
		Written: func(p string) { written = append(written, p) }}
	if err := f.Send(context.Background(), Message{To: "anna@example.de", Subject: "Code", Body: "Code: 12345678"}); err != nil {
		t.Fatal(err)
	}
	if len(written) != 1 {
		t.Fatalf("written %v", written)
	}
	st, err := os.Stat(written[0])
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v", st.Mode(), err)
	}
	b, _ := os.ReadFile(written[0])
	msg, err := mail.ReadMessage(strings.NewReader(string(b)))
	if err != nil || msg.Header.Get("To") != "anna@example.de" {
		t.Fatalf("message %v %s", err, b)
	}
	body, _ := io.ReadAll(msg.Body)
	if !strings.Contains(string(body), "12345678") {
		t.Fatalf("body %q", body)
	}
	if err := f.Send(context.Background(), Message{To: "a@example.de\r\nBcc: x@y.de", Subject: "x", Body: "x"}); err == nil {
		t.Fatal("header injection accepted")
	}
}

// BenchmarkArgon2id measures one password hash with the production
// parameters (DefaultArgon2).
func BenchmarkArgon2id(b *testing.B) {
	for b.Loop() {
		if _, err := hashPassword(cryptoRand{}, DefaultArgon2, "correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}

type mimeWordDecoder = mime.WordDecoder

type cryptoRand struct{}

func (cryptoRand) Read(p []byte) (int, error) { return rand.Read(p) }

// An address that is not valid UTF-8, or holds a control character, never
// reaches a header, whoever calls the mailer.
func TestFormatMessageRefusesBadAddresses(t *testing.T) {
	for _, to := range []string{"anna\xff@example.de", "anna@example.de\r\nBcc: x@y.de", "anna\x00@example.de", "anna\x7f@example.de", "anna\u0085@example.de"} {
		if _, err := formatMessage("kanal@example.de", Message{To: to, Subject: "s", Body: "b"}, time.Now(), "id@example.de"); err == nil {
			t.Errorf("%q reached a header", to)
		}
	}
	if _, err := formatMessage("kanal@example.de", Message{To: "jörg@example.de", Subject: "s", Body: "b"}, time.Now(), "id@example.de"); err != nil {
		t.Errorf("UTF-8 address refused: %v", err)
	}
}
