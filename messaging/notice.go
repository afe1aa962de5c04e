package messaging

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

// Notices are envelopes the server writes itself: a group's membership
// changed, a payment was received. They carry facts the server holds
// anyway, so they are not encrypted: the envelope's ciphertext field holds
// a NoticeBody in JSON, and its sender is NoticeSender, which no device id
// can be (identity's ids start with "dev_"). Clients show notices as the
// server's word, never as a member's.

// NoticeSender is the sender "device" of a notice.
const NoticeSender = "kanal"

// NoticeBody is what a notice envelope carries.
type NoticeBody struct {
	// Conversation repeats the envelope's conversation.
	Conversation string `json:"conv"`
	// Message is a kind.Message in its JSON form.
	Message json.RawMessage `json:"msg"`
}

// Notice is a message from the server to the devices of some accounts and
// of an organisation's agents, in a conversation.
type Notice struct {
	Accounts     []string // every active device of these accounts
	OrgID        string   // and every active agent device of this organisation ("": none)
	Conversation string   // a conversation id (DirectConversation, OrgConversation, a group id)
	Message      []byte   // a kind.Message, JSON; validated with kind.Unmarshal
}

func noticeBytes(conversation string, m *kind.Message) ([]byte, error) {
	raw, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	return json.Marshal(NoticeBody{Conversation: conversation, Message: raw})
}

// newMessageID returns a random id for a message the server writes.
func newMessageID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "kanal_" + base64.RawURLEncoding.EncodeToString(b[:])
}

// PostNotice stores a notice in the mailbox of every device it names, in
// one transaction, and wakes them. Other domains reach it through an
// adapter in cmd/kanald (payments announces payment.status this way).
func (s *Service) PostNotice(ctx context.Context, n Notice) error {
	if s.mailbox == nil {
		return fmt.Errorf("messaging.notice: needs Options.Mailbox")
	}
	m, err := kind.Unmarshal(n.Message)
	if err != nil {
		return fmt.Errorf("messaging.notice: %w", err)
	}
	if n.Conversation == "" || len(n.Conversation) > 64 {
		return fmt.Errorf("%w: notice: bad conversation", ErrInvalid)
	}
	set := map[string]bool{}
	ds, err := s.dir.DevicesOf(ctx, n.Accounts)
	if err != nil {
		return fmt.Errorf("messaging.notice: %w", err)
	}
	for _, d := range ds {
		set[d.DeviceID] = true
	}
	if n.OrgID != "" {
		_, ds, err := s.dir.OrgAgents(ctx, n.OrgID)
		if err != nil {
			return fmt.Errorf("messaging.notice: %w", err)
		}
		for _, d := range ds {
			set[d.DeviceID] = true
		}
	}
	if len(set) == 0 {
		return nil
	}
	ct, err := noticeBytes(n.Conversation, m)
	if err != nil {
		return err
	}
	devices := make([]string, 0, len(set))
	for d := range set {
		devices = append(devices, d)
	}
	sort.Strings(devices)
	envs := make([]mailbox.Envelope, len(devices))
	for i, d := range devices {
		envs[i] = mailbox.Envelope{Conversation: n.Conversation, Sender: NoticeSender, Recipient: d,
			Class: string(m.Class()), Ciphertext: ct}
	}
	if err := s.mailbox.Append(ctx, envs); err != nil {
		return fmt.Errorf("messaging.notice: %w", err)
	}
	if s.notify != nil {
		s.notify(devices...)
	}
	return nil
}
