package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/kind"
	mailbox "github.com/kanal-server/kanal/messaging/mailbox/wire"
)

// Notices: what the server itself states (a group's members changed, a
// payment arrived, a device of this account changed its key). Anyone who can write kanal's database or publish on
// its bus can put an envelope "from kanal" into a mailbox, so an envelope
// from messaging.NoticeSender is believed only when VerifyNotice accepts
// it; anything else that claims to come from the server is a
// ReceiveError wrapping ErrBadNotice, never an Incoming.

// ErrBadNotice is the error of an envelope that claims to come from the
// server but is not a notice the deployment notary signed for this device
// and conversation, of a kind the server sends, and not seen before.
var ErrBadNotice = errors.New("messaging/client: notice not signed by the deployment's notary for this device")

// Notice is a notice VerifyNotice accepted.
type Notice struct {
	ID           string    // the notice's id (the same on every device it went to)
	Time         time.Time // when the server stated it, as signed
	Conversation string
	Message      *kind.Message
	Raw          []byte // Message in its JSON form
}

// VerifyNotice checks an envelope that claims to come from the server:
// its statement must be signed by a notary certificate issued by the CA
// this client trusts and valid at the statement's time, for the purpose
// of its kind; the kind must be one the server sends
// (messaging.NoticeKind); the statement must name this device and the
// envelope's conversation; and the message must be valid and of the
// signed kind. It does not remember notices: a replay of the same notice
// to this device verifies again (Receive refuses repeats).
func (c *Client) VerifyNotice(env *mailbox.Envelope) (*Notice, error) {
	if env.Sender != messaging.NoticeSender {
		return nil, fmt.Errorf("%w: sent by %s", ErrBadNotice, env.Sender)
	}
	var body messaging.NoticeBody
	if err := decodeStrict(env.Ciphertext, &body); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadNotice, err)
	}
	st, err := messaging.ParseNoticeStatement(body.Statement)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadNotice, err)
	}
	if !messaging.NoticeKind(st.Kind) {
		return nil, fmt.Errorf("%w: the server does not send %q", ErrBadNotice, st.Kind)
	}
	if err := ca.VerifyNotarized(body.Notary, c.roots, st.Time, messaging.NoticePurpose(st.Kind), body.Statement, body.Signature); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadNotice, err)
	}
	// Only now is the statement the server's word; it must be about this
	// device and the conversation the envelope came in.
	if st.Recipient != c.device {
		return nil, fmt.Errorf("%w: signed for device %s", ErrBadNotice, st.Recipient)
	}
	if st.Conversation != env.Conversation {
		return nil, fmt.Errorf("%w: signed for conversation %s, arrived in %s", ErrBadNotice, st.Conversation, env.Conversation)
	}
	m, err := kind.Unmarshal(st.Message)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadNotice, err)
	}
	if m.Kind != st.Kind {
		return nil, fmt.Errorf("%w: signed as %s, carries %s", ErrBadNotice, st.Kind, m.Kind)
	}
	switch b := m.Body.(type) {
	case *kind.GroupChangeBody:
		if !messaging.ValidGroupID(st.Conversation) || b.GroupID != st.Conversation {
			return nil, fmt.Errorf("%w: a change of group %s in conversation %s", ErrBadNotice, b.GroupID, st.Conversation)
		}
	case *kind.DeviceChangeBody:
		if b.AccountID != c.account || st.Conversation != messaging.DirectConversation(c.account, c.account) {
			return nil, fmt.Errorf("%w: a device change of account %s in conversation %s", ErrBadNotice, b.AccountID, st.Conversation)
		}
	case *kind.DocumentWithdrawnBody:
		if b.Owner == c.account {
			return nil, fmt.Errorf("%w: a withdrawal of this account's own share", ErrBadNotice)
		}
	case *kind.OrgChangeBody:
		if st.Conversation != messaging.OrgStaffConversation(b.OrgID) {
			return nil, fmt.Errorf("%w: a change of organisation %s in conversation %s", ErrBadNotice, b.OrgID, st.Conversation)
		}
	case *kind.PaymentStatusBody:
		if !strings.HasPrefix(st.Conversation, "o_") {
			return nil, fmt.Errorf("%w: a payment status outside an organisation's conversation", ErrBadNotice)
		}
	}
	return &Notice{ID: st.ID, Time: st.Time, Conversation: st.Conversation, Message: m, Raw: st.Message}, nil
}

// nameNotices names, in the Store, the ids of the notices accepted (a
// bounded list).
const nameNotices = "inbox/notices"

// acceptNotice refuses a notice this device has accepted before (a real
// notice replayed under a new envelope id), applies a group change to the
// members this device believes (recipients.go: what it later encrypts the
// group's messages to), and remembers the notice. The caller holds
// inboxMu.
func (c *Client) acceptNotice(n *Notice) error {
	var ids []string
	if b, err := c.store.Get(nameNotices); err == nil {
		if err := json.Unmarshal(b, &ids); err != nil {
			return err
		}
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	if slices.Contains(ids, n.ID) {
		return fmt.Errorf("%w: notice %s was received before", ErrBadNotice, n.ID)
	}
	if b, ok := n.Message.Body.(*kind.GroupChangeBody); ok {
		if err := c.applyGroupChange(n.Conversation, b); err != nil {
			return err
		}
	}
	ids = append(ids, n.ID)
	if len(ids) > maxSeen {
		ids = ids[len(ids)-maxSeen:]
	}
	return c.putJSON(nameNotices, ids)
}
