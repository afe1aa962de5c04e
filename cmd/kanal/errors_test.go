package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/coder/websocket"

	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	mclient "github.com/kanal-server/kanal/messaging/client"
	mbox "github.com/kanal-server/kanal/messaging/mailbox"
)

// TestErrorSentence: an error reads as one line in the user's terms —
// no package prefixes, nothing said twice, no problem type, no close
// code.
func TestErrorSentence(t *testing.T) {
	statement := &idclient.Problem{Type: "urn:kanal:problem:invalid-statement", Title: "Bank statement refused", Status: 422,
		Detail: "payments.import: bank statement refused: camt: invalid statement: no Stmt element"}
	token := &idclient.Problem{Type: "urn:kanal:problem:token-already-issued", Title: "Token already issued", Status: 409,
		Detail: "surveys: token already issued: this account already received its token for this survey"}
	for _, c := range []struct {
		err  error
		want string
	}{
		{statement, "import-camt: bank statement refused: invalid statement: no Stmt element"},
		{fmt.Errorf("payments/client: %w", statement), "import-camt: bank statement refused: invalid statement: no Stmt element"},
		{token, "import-camt: token already issued: this account already received its token for this survey"},
		{&idclient.Problem{Type: "about:blank", Status: 502}, "import-camt: bad gateway"},
		{&idclient.Problem{Type: "urn:kanal:problem:forbidden", Title: "Not allowed", Status: 403, Detail: "your role does not allow this"},
			"import-camt: not allowed: your role does not allow this"},
		{fmt.Errorf("%w: %w", mclient.ErrClosed, websocket.CloseError{Code: mbox.StatusSessionEnded, Reason: "password changed"}),
			"import-camt: Your password was changed, which ended this session; log in again with the new password."},
		{errors.New("messaging/client: upload attachment: the server stored something else"), "import-camt: upload attachment: the server stored something else"},
	} {
		got := (&shownError{cmd: "import-camt", err: c.err}).Error()
		if got != c.want {
			t.Errorf("%v\n got %q\nwant %q", c.err, got, c.want)
		}
		if strings.Contains(got, "urn:") || strings.Contains(got, "\n") || strings.Count(strings.ToLower(got), "refused") > 1 {
			t.Errorf("not one plain line: %q", got)
		}
	}
}

// TestErrorVerbose: with -v, the technical chain follows on a second
// line — through the real binary against kanald.
func TestErrorVerbose(t *testing.T) {
	srv := kanaldtest.Start(t, bin.kanald)
	s := newSession(t, srv)
	s.run([]step{
		{cmd: "kanal register alice@example.org"},
		{cmd: "kanal verify 00000000", exit: 1, want: []string{"kanal: verify: "}, not: []string{"urn:kanal:problem", "technical:", "HTTP"}},
		{cmd: "kanal -v verify 00000000", exit: 1, want: []string{"kanal: verify: ", "\n  technical: ", "(urn:kanal:problem:invalid-code)", "HTTP 4"}},
		{cmd: "kanal verify -v 00000000", exit: 1, want: []string{"\n  technical: "}},
		{cmd: "kanal help", want: []string{"  -v  "}},
	})
}

// TestPlural: one rule for every count kanal shows.
func TestPlural(t *testing.T) {
	for _, c := range []struct {
		n          int
		noun, want string
	}{
		{0, "device", "0 devices"}, {1, "device", "1 device"}, {2, "device", "2 devices"},
		{1, "membership certificate", "1 membership certificate"}, {3, "vote", "3 votes"},
		{1, "entry|entries", "1 entry"}, {2, "entry|entries", "2 entries"},
	} {
		if got := plural(c.n, c.noun); got != c.want {
			t.Errorf("plural(%d, %q) = %q, want %q", c.n, c.noun, got, c.want)
		}
	}
	if got := size(1); got != "1 byte" {
		t.Errorf("size(1) = %q", got)
	}
}
