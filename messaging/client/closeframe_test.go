package client

import (
	"fmt"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/kanal-server/kanal/messaging/mailbox"
)

// TestCloseSentence: a close frame reaches a user as a sentence, never as
// its code and reason.
func TestCloseSentence(t *testing.T) {
	for _, c := range []struct {
		ce   websocket.CloseError
		want string
	}{
		{websocket.CloseError{Code: mailbox.StatusSessionEnded, Reason: "password changed"}, "Your password was changed"},
		{websocket.CloseError{Code: mailbox.StatusRevoked, Reason: "device revoked"}, "This device has been revoked"},
		{websocket.CloseError{Code: websocket.StatusGoingAway, Reason: "server shutting down"}, "restarting or shutting down"},
		{websocket.CloseError{Code: websocket.StatusPolicyViolation, Reason: "frame: unknown field"}, "please update kanal"},
		{websocket.CloseError{Code: 4999, Reason: "x"}, "The connection to the server was closed."},
	} {
		got, ok := CloseSentence(fmt.Errorf("%w: %w", ErrClosed, c.ce))
		if !ok || !strings.Contains(got, c.want) || strings.Contains(got, c.ce.Reason) && c.ce.Code != mailbox.StatusSessionEnded {
			t.Errorf("CloseSentence(%d %q) = %q, %v; want %q", c.ce.Code, c.ce.Reason, got, ok, c.want)
		}
		if strings.Contains(got, fmt.Sprint(int(c.ce.Code))) {
			t.Errorf("CloseSentence(%d) shows the code: %q", c.ce.Code, got)
		}
	}
	if _, ok := CloseSentence(ErrClosed); ok {
		t.Error("CloseSentence without a close frame")
	}
}
