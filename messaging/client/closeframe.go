package client

import (
	"errors"

	"github.com/coder/websocket"

	mailbox "github.com/kanal-server/kanal/messaging/mailbox/wire"
)

// CloseSentence says in one sentence, in a user's terms, why the server
// closed this device's stream, when err holds the close frame; ok is
// false when it does not. A program shows this instead of the frame's
// code and reason.
func CloseSentence(err error) (sentence string, ok bool) {
	var ce websocket.CloseError
	if !errors.As(err, &ce) {
		return "", false
	}
	switch ce.Code {
	case mailbox.StatusRevoked:
		return "This device has been revoked: it can no longer receive messages. Enrol it again to use it.", true
	case mailbox.StatusSessionEnded:
		return sessionEndedReason(ce.Reason), true
	case websocket.StatusNormalClosure:
		return "The server ended the connection.", true
	case websocket.StatusGoingAway:
		return "The server is restarting or shutting down; try again in a moment.", true
	case websocket.StatusTryAgainLater, websocket.StatusInternalError:
		return "The server could not keep the connection open just now; try again in a moment.", true
	case websocket.StatusPolicyViolation, websocket.StatusInvalidFramePayloadData, websocket.StatusMessageTooBig, websocket.StatusUnsupportedData:
		return "The server closed the connection because this program sent something it does not accept; please update kanal.", true
	}
	return "The connection to the server was closed.", true
}
