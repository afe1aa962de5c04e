package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/identity/keystore"
	"github.com/kanal-server/kanal/messaging"
	mclient "github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
)

// The chat commands. What this device receives is kept, decrypted, in
// its encrypted key store (the last historyLimit messages), so "kanal
// conversations" and "kanal chat" can show what came before; the server
// forgets an envelope once this device has acknowledged it.

// chatOpts are the flags of the chat commands.
type chatOpts struct {
	org  string // speak as this organisation (agents)
	wait time.Duration
	file string // send this file as an attachment
	name string // the attachment's name, instead of the file's
}

func chatCommands() []*command {
	var co chatOpts
	peerHelp := `The other side is an account id (acc_…) for a direct chat, an
organisation id (org_…) to write to an office's or merchant's shared inbox,
or a group id (g_…). An agent answers a citizen as the organisation with
--org ORG and the citizen's account id.`
	orgFlag := func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&co.org, "org", "", "answer as this `organisation` (you must be one of its agents)")
	}
	return []*command{
		{
			name: "chat", args: "[--org ORG] <account|org|group>", nargs: 1,
			summary: "chat interactively: type a line to send it, /quit to leave",
			help: `Shows the conversation's recent messages, then every new message as it
arrives, and sends each line you type. Messages you read get a read receipt;
receipts for yours show as ✓ (delivered) and ✓✓ (read). Type /quit or press
Ctrl-D to leave.

` + peerHelp,
			flags: orgFlag,
			run:   func(ctx context.Context, c *cli, o *opts, args []string) error { return chat(ctx, c, o, &co, args[0]) },
		},
		{
			name: "send", args: "[--org ORG] [--file PATH] <account|org|group> [text]", nargs: -1,
			summary: "send one text message, or a file with --file",
			help: `Encrypts the text for every device of the conversation and sends it.
With --file, the file is encrypted with a key of its own, uploaded, and the
key sent end to end; the other side saves it with 'kanal get'. The server
never sees the file, its name or its type.

` + peerHelp,
			flags: func(fs *flag.FlagSet, o *opts) {
				orgFlag(fs, o)
				fs.StringVar(&co.file, "file", "", "send this `file` as an attachment (at most 25 MB)")
				fs.StringVar(&co.name, "name", "", "the `name` the other side sees for the file (default: the file's own)")
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error { return chatSend(ctx, c, o, &co, args) },
		},
		{
			name: "inbox", args: "[--wait DURATION]", nargs: 0,
			summary: "fetch and print the messages waiting for this device",
			help: `Connects, prints every message that arrived since the last time, keeps
them in the key store, sends delivery receipts, and exits. With --wait it
stays that long for more.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.DurationVar(&co.wait, "wait", 0, "keep listening this long after the backlog")
			},
			run: func(ctx context.Context, c *cli, o *opts, _ []string) error { return inbox(ctx, c, o, &co) },
		},
		{
			name: "conversations", nargs: 0,
			summary: "list conversations with their newest message (fetches the inbox first)",
			run:     func(ctx context.Context, c *cli, o *opts, _ []string) error { return conversations(ctx, c, o) },
		},
	}
}

// parsePeer reads the other side of a conversation.
func parsePeer(s, org string) (mclient.Peer, error) {
	switch {
	case strings.HasPrefix(s, "g_") && org == "":
		return mclient.Peer{GroupID: s}, nil
	case strings.HasPrefix(s, "org_") && org == "":
		return mclient.Peer{OrgID: s}, nil
	case strings.HasPrefix(s, "acc_"):
		return mclient.Peer{AccountID: s, OrgID: org}, nil
	case org != "":
		return mclient.Peer{}, fmt.Errorf("--org answers a citizen: give their account id (acc_…), not %q", s)
	default:
		return mclient.Peer{}, fmt.Errorf("%q is not an account (acc_…), organisation (org_…) or group (g_…) id", s)
	}
}

// peerString is p as parsePeer reads it, and the organisation an agent
// answers for.
func peerString(p mclient.Peer) (peer, org string) {
	switch {
	case p.GroupID != "":
		return p.GroupID, ""
	case p.OrgID != "" && p.AccountID != "":
		return p.AccountID, p.OrgID
	case p.OrgID != "":
		return p.OrgID, ""
	default:
		return p.AccountID, ""
	}
}

// entry is one message in the local history.
type entry struct {
	ID           string    `json:"id"`
	Conversation string    `json:"conv"`
	Reply        string    `json:"reply"` // the peer an answer goes to, as parsePeer reads it
	ReplyOrg     string    `json:"reply_org,omitempty"`
	From         string    `json:"from"` // account, "me", or "kanal"
	Org          string    `json:"org,omitempty"`
	Kind         string    `json:"kind"`
	Text         string    `json:"text"`
	At           time.Time `json:"at"`
	Status       string    `json:"status,omitempty"` // for my messages: sent, delivered, read
	// JWS is a received offer's compact JWS, kept so that 'kanal offer
	// list|show|sign ID' find an offer the inbox already showed.
	JWS string `json:"jws,omitempty"`
	// Group is a group change, whose accounts are named when it is shown.
	Group *kind.GroupChangeBody `json:"group,omitempty"`
	// Att is an attachment's blob, key and hash, for 'kanal get ID'.
	Att *kind.AttachmentBody `json:"att,omitempty"`
	// Form is a received form request, for 'kanal form fill'.
	Form *kind.FormRequestBody `json:"form,omitempty"`
}

const (
	historyName  = "cli/history"
	historyLimit = 1000
)

// history is the local message history, kept in the key store.
type history struct {
	mu      sync.Mutex
	store   mclient.Store
	entries []entry
}

func loadHistory(s mclient.Store) (*history, error) {
	h := &history{store: s}
	b, err := s.Get(historyName)
	if errors.Is(err, mclient.ErrNotFound) {
		return h, nil
	} else if err != nil {
		return nil, err
	}
	return h, json.Unmarshal(b, &h.entries)
}

func (h *history) add(e entry) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, x := range h.entries {
		if x.ID == e.ID && x.From == e.From {
			return nil
		}
	}
	h.entries = append(h.entries, e)
	if len(h.entries) > historyLimit {
		h.entries = h.entries[len(h.entries)-historyLimit:]
	}
	return h.save()
}

func (h *history) save() error {
	b, err := json.Marshal(h.entries)
	if err != nil {
		return err
	}
	return h.store.Put(historyName, b)
}

// mark records a receipt for one of my messages; read wins over delivered.
func (h *history) mark(ids []string, status string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	changed := false
	for i := range h.entries {
		e := &h.entries[i]
		if e.From == "me" && contains(ids, e.ID) && e.Status != "read" && e.Status != status {
			e.Status, changed = status, true
		}
	}
	if !changed {
		return nil
	}
	return h.save()
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// summary is one line for any kind of message.
func summary(m *kind.Message) string {
	switch b := m.Body.(type) {
	case *kind.TextBody:
		return b.Text
	case *kind.ReceiptBody:
		return b.Status + " " + strings.Join(b.IDs, ",")
	case *kind.GroupChangeBody:
		return groupChange(b, func(id string) string { return id })
	case *kind.GroupNameBody:
		return "named the group " + displayName(b.Name)
	case *kind.PaymentRequestBody:
		s := fmt.Sprintf("payment request %s: %d.%02d %s to %s, reference %s", b.RequestID, b.AmountCents/100, b.AmountCents%100, b.Currency, b.Creditor, b.Reference)
		if b.Purpose != "" {
			s += " (" + b.Purpose + ")"
		}
		return s
	case *kind.PaymentStatusBody:
		return "payment " + b.RequestID + " " + b.Status
	case *kind.AppPostBody:
		// Not an agent's end-to-end message: the server posted it for the
		// mini-app, whose credentials and consent it checked.
		return fmt.Sprintf("[mini-app %s %q, posted by kanal] %s", b.AppID, b.AppName, b.Text)
	case *kind.OrgChangeBody:
		return "organisation " + b.OrgID + ": the account of member " + b.AccountID + " was erased; its membership has ended"
	case *kind.DeviceChangeBody:
		return "your device " + b.DeviceID + " has a new key; if you did not do this, revoke it with 'kanal device revoke " + b.DeviceID + "'"
	case *kind.SurveyInviteBody:
		return "survey invitation: " + b.Title + " (" + b.SurveyID + ")"
	case *kind.AttachmentBody:
		return fmt.Sprintf("file %s (%s, %s)", displayName(b.Name), size(b.PlainSize()), b.MIME)
	case *kind.PollBody:
		return "poll " + b.Op + " " + b.PollID + " " + b.Question
	case *kind.OfferBody:
		return "offer " + b.OfferID
	case *kind.ContractBody:
		return "contract " + b.ContractID
	case *kind.DocumentShareBody:
		return fmt.Sprintf("document %s (%s version %d): fetch it with 'kanal vault receive'", displayName(b.Name), b.DocumentID, b.Version)
	case *kind.DocumentWithdrawnBody:
		return fmt.Sprintf("%s withdrew the share of document %s version %d; what you fetched before stays with you", b.Owner, b.DocumentID, b.Version)
	case *kind.FormRequestBody:
		return fmt.Sprintf("form request %s: %s (%s %s) — kanal form fill %s", b.RequestID, b.Title, b.TemplateID, b.Version, b.RequestID)
	case *kind.FormSubmissionBody:
		return fmt.Sprintf("form %s %s submitted (case %s, %s)", b.TemplateID, b.Version, b.CaseID, plural(len(b.Attachments), "attachment"))
	case *kind.CaseStatusBody:
		s := fmt.Sprintf("case %s: %s (%s), due %s", b.CaseID, statusLabel(b.Status), b.TemplateID, b.DueDate)
		if b.Assignee != "" {
			s += ", assigned to " + b.Assignee
		}
		return s
	case *kind.CaseNoteBody:
		return "note on case " + b.CaseID + ": " + b.Text
	case *kind.VerifiedNameBody:
		// The name itself is shown as the sender's (names.go).
		if b.Withdrawn {
			return "withdrew the consent to show the eID-verified name to this office"
		}
		return "shares the name verified by eID with this office"
	default:
		return "[" + string(m.Kind) + "]"
	}
}

// groupChange says what a group change did, naming accounts with name.
func groupChange(b *kind.GroupChangeBody, name func(string) string) string {
	switch b.Op {
	case "created":
		return name(b.By) + " created the group"
	case "added":
		return name(b.By) + " added " + name(b.AccountID) + " as " + b.Role
	case "removed":
		return name(b.By) + " removed " + name(b.AccountID)
	case "left":
		return name(b.AccountID) + " left"
	case "member":
		return name(b.AccountID) + " is a member (" + b.Role + ")"
	default:
		return name(b.By) + " made " + name(b.AccountID) + " " + b.Role
	}
}

func entryOf(in *mclient.Incoming) entry {
	e := entry{ID: in.Message.ID, Conversation: in.Conversation, From: in.SenderAccount, Kind: string(in.Message.Kind),
		Text: summary(in.Message), At: in.ServerTime}
	if in.FromServer {
		e.From = "kanal"
	}
	if in.Org != nil {
		e.Org = in.Org.OrgName
	}
	if in.Announcement {
		// Signed by an agent for the organisation, checked against the
		// CA; public, not end-to-end encrypted.
		e.Text = fmt.Sprintf("[verified announcement of %s (%s)] %s", in.Org.OrgName, in.Org.OrgID, e.Text)
	}
	e.Reply, e.ReplyOrg = peerString(in.Reply)
	if b, ok := in.Message.Body.(*kind.OfferBody); ok {
		e.JWS = b.JWS
	}
	if b, ok := in.Message.Body.(*kind.AttachmentBody); ok {
		e.Att = b
	}
	if b, ok := in.Message.Body.(*kind.GroupChangeBody); ok {
		e.Group = b // its accounts are named when it is shown
	}
	if b, ok := in.Message.Body.(*kind.FormRequestBody); ok && (in.Org != nil || in.FromServer) {
		// Only an office's request is filled in: an agent's, which proves
		// its membership, or a notice the server posted for the office's
		// mini-app, whose office 'kanal form fill' derives from the signed
		// conversation and the template's verified publisher.
		e.Form = b
		if in.FromServer {
			e.Text = "[mini-app of the office, posted by kanal] " + e.Text
		}
	}
	return e
}

func (e entry) line(n *namer) string {
	who := n.sender(e)
	mark := ""
	switch e.Status {
	case "delivered":
		mark = " ✓"
	case "read":
		mark = " ✓✓"
	}
	text := e.Text
	if e.Group != nil {
		text = groupChange(e.Group, n.account)
	}
	if e.Att != nil {
		text += " — kanal get " + e.ID
	}
	return fmt.Sprintf("[%s] %s: %s%s", e.At.Local().Format("15:04"), who, text, mark)
}

// chatSession is an open chat: the key store, the E2E client and the history.
type chatSession struct {
	st    *keystore.Store
	mc    *mclient.Client
	hist  *history
	names *namer
	// cli and opts are the command's, for what a message makes the
	// session fetch (a form's template from the catalogue).
	cli  *cli
	opts *opts
}

func (c *cli) openChat(ctx context.Context, o *opts) (*chatSession, error) {
	st, api, err := c.openSession(ctx, o) // refreshes the session if needed
	if err != nil {
		return nil, err
	}
	mc, err := c.messenger(ctx, o, st)
	if err != nil {
		return nil, err
	}
	h, err := loadHistory(mclient.NewKeystoreStore(st))
	if err != nil {
		return nil, err
	}
	n := c.names(ctx, o, st, api)
	for _, e := range h.entries {
		n.learnOrg(e.Reply, e.Org)
		n.learnOrg(e.ReplyOrg, e.Org)
	}
	return &chatSession{st: st, mc: mc, hist: h, names: n, cli: c, opts: o}, nil
}

// take records what arrived: receipts update my messages, everything
// else goes into the history. It returns the entry to show, if any.
func (s *chatSession) take(ctx context.Context, in *mclient.Incoming) (*entry, error) {
	if rb, ok := in.Message.Body.(*kind.ReceiptBody); ok {
		return nil, s.hist.mark(rb.IDs, rb.Status)
	}
	if in.Message.Kind == kind.Profile {
		return nil, nil // the SDK keeps it; names.go shows it
	}
	e := entryOf(in)
	s.names.learnOrg(e.Reply, e.Org)
	s.names.learnOrg(e.ReplyOrg, e.Org)
	if in.SenderAccount == s.st.Data.AccountID && !in.FromServer {
		e.From = "me"
	}
	if note, err := s.takeCase(ctx, s.cli, s.opts, in); err != nil {
		return nil, err
	} else if note != "" {
		e.Text = note
	}
	if pb, ok := in.Message.Body.(*kind.PollBody); ok && !in.FromServer {
		note, err := s.applyPoll(pb, in.Conversation, in.SenderAccount, e.Reply, e.ReplyOrg, in.ServerTime)
		if err != nil {
			return nil, err
		}
		e.Text = s.pollLine(pb, in.Conversation, in.SenderAccount)
		if note != "" {
			e.Text = note
		}
	}
	return &e, s.hist.add(e)
}

// messageSender is a stream, or a live stream, that sends.
type messageSender interface {
	Send(ctx context.Context, to mclient.Peer, m *kind.Message) (*messaging.SendResponse, error)
}

func (s *chatSession) sendText(ctx context.Context, c *cli, to mclient.Peer, text string, via messageSender) error {
	_, err := s.sendBody(ctx, c, to, &kind.TextBody{Text: text}, via)
	return err
}

// sendBody sends one message of any kind and keeps it in the history.
// Sent outside a chat (via nil) to a group whose members this device does
// not know yet, it reads the group's notices first and tries once more.
func (s *chatSession) sendBody(ctx context.Context, c *cli, to mclient.Peer, body kind.Body, via messageSender) (*kind.Message, error) {
	m, err := kind.New("cli-"+newKey(), c.now(), body)
	if err != nil {
		return nil, err
	}
	send := func() error {
		var err error
		if via != nil {
			_, err = via.Send(ctx, to, m)
		} else {
			_, err = s.mc.Send(ctx, to, m)
		}
		return err
	}
	err = send()
	if errors.Is(err, mclient.ErrNotRecipient) && to.GroupID != "" && via == nil {
		// The group's members are what this device was told by the
		// group's notices: read those waiting — and, if it knows no member
		// at all, ask for the member list first — then try once more. A
		// device that knows the group never asks: a refused member stays
		// refused.
		known, gerr := s.mc.GroupMembers(to.GroupID)
		if gerr != nil {
			return nil, gerr
		}
		if len(known) == 0 {
			if err := s.mc.RequestRoster(ctx, to.GroupID); err != nil {
				return nil, err
			}
		}
		if err := s.fetch(ctx, c, 0, func(entry) {}); err != nil {
			return nil, err
		}
		err = send()
	}
	if err != nil {
		return nil, explainSend(err)
	}
	conv, _ := s.mc.ConversationID(to)
	reply, org := peerString(to)
	e := entry{ID: m.ID, Conversation: conv, Reply: reply, ReplyOrg: org, From: "me", Kind: string(m.Kind), Text: summary(m), At: c.now(), Status: "sent"}
	if a, ok := body.(*kind.AttachmentBody); ok {
		e.Att = a
	}
	if pb, ok := body.(*kind.PollBody); ok {
		if _, err := s.applyPoll(pb, conv, s.st.Data.AccountID, reply, org, e.At); err != nil {
			return nil, err
		}
		e.Text = s.pollLine(pb, conv, s.st.Data.AccountID)
	}
	return m, s.hist.add(e)
}

func chatSend(ctx context.Context, c *cli, o *opts, co *chatOpts, args []string) error {
	if co.file == "" && len(args) != 2 || co.file != "" && len(args) != 1 {
		return &usageError{cmd: "send", msg: "usage: kanal send [--org ORG] <account|org|group> <text>, or kanal send --file PATH <account|org|group>"}
	}
	to, err := parsePeer(args[0], co.org)
	if err != nil {
		return &usageError{cmd: "send", msg: err.Error()}
	}
	var f *localFile
	if co.file != "" {
		if f, err = readLocalFile(co.file, co.name); err != nil {
			return err
		}
	}
	s, err := c.openChat(ctx, o)
	if err != nil {
		return err
	}
	var body kind.Body = &kind.TextBody{}
	if f != nil {
		if body, err = s.mc.UploadAttachment(ctx, f.data, f.mime, f.name); err != nil {
			return err
		}
	} else {
		body = &kind.TextBody{Text: args[1]}
	}
	m, err := s.sendBody(ctx, c, to, body, nil)
	if err != nil {
		return err
	}
	if a, ok := body.(*kind.AttachmentBody); ok {
		fmt.Fprintf(c.stdout, "sent %s (%s); the other side saves it with: kanal get %s\n", displayName(a.Name), size(a.PlainSize()), m.ID)
		return nil
	}
	fmt.Fprintln(c.stdout, "sent")
	return nil
}

// newDevice tells the user that a contact (or this account) has a device
// the key store had not met before.
func (c *cli) newDevice(st *keystore.Store, n mclient.NewDevice) {
	if n.AccountID == st.Data.AccountID {
		fmt.Fprintf(c.stderr, "Your account has a new device (%s). If you did not add it, revoke it: kanal device revoke %s\n", n.DeviceID, n.DeviceID)
		return
	}
	fmt.Fprintf(c.stderr, "%s has a new device (%s).\n", c.names(context.Background(), &opts{}, st, nil).account(n.AccountID), n.DeviceID)
}

// explainSend says in one sentence why a send was refused for a device
// the server named as a recipient.
func explainSend(err error) error {
	var kc *mclient.KeyChangedError
	if errors.As(err, &kc) {
		return fmt.Errorf("not sent: %w. Run 'kanal safety-number %s' and, if the numbers match, 'kanal contact verify %s'", kc, kc.AccountID, kc.AccountID)
	}
	var re *mclient.RecipientError
	if !errors.As(err, &re) {
		return err
	}
	return &refusedRecipient{re}
}

type refusedRecipient struct{ re *mclient.RecipientError }

func (e *refusedRecipient) Error() string {
	who := "device " + e.re.DeviceID
	if e.re.AccountID != "" {
		who += " of " + e.re.AccountID
	}
	return fmt.Sprintf("not sent to anyone: the server wanted %s to read this conversation, but %s", who, e.re.Reason)
}

func (e *refusedRecipient) Unwrap() error { return e.re }

// fetch reads the backlog (and, with wait, what arrives for that long),
// records it and sends delivery receipts. show is called for each new
// entry.
func (s *chatSession) fetch(ctx context.Context, c *cli, wait time.Duration, show func(entry)) error {
	st, err := s.mc.Connect(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	handle := func(in *mclient.Incoming) error {
		e, err := s.take(ctx, in)
		if err != nil || e == nil {
			return err
		}
		show(*e)
		if err := st.Receipt(ctx, in, "delivered"); err != nil {
			fmt.Fprintf(c.stderr, "receipt to %s not sent: %v\n", in.SenderAccount, err)
		}
		return nil
	}
	got, bad, err := st.Backlog(ctx)
	for _, b := range bad {
		fmt.Fprintf(c.stderr, "unreadable message: %v\n", b)
	}
	if err != nil {
		return err
	}
	for _, in := range got {
		if err := handle(in); err != nil {
			return err
		}
	}
	if wait > 0 {
		wctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		for {
			in, err := st.Receive(wctx)
			var re *mclient.ReceiveError
			switch {
			case errors.As(err, &re):
				fmt.Fprintln(c.stderr, receiveProblem(re))
				continue
			case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
				return st.Ack(ctx)
			case err != nil:
				return err
			}
			if err := handle(in); err != nil {
				return err
			}
		}
	}
	return st.Ack(ctx)
}

func inbox(ctx context.Context, c *cli, o *opts, co *chatOpts) error {
	s, err := c.openChat(ctx, o)
	if err != nil {
		return err
	}
	n := 0
	err = s.fetch(ctx, c, co.wait, func(e entry) {
		n++
		fmt.Fprintf(c.stdout, "%s  %s\n", s.with(e), e.line(s.names))
	})
	if err != nil {
		return err
	}
	if n == 0 {
		fmt.Fprintln(c.stdout, "no new messages")
	}
	return nil
}

func conversations(ctx context.Context, c *cli, o *opts) error {
	s, err := c.openChat(ctx, o)
	if err != nil {
		return err
	}
	if err := s.fetch(ctx, c, 0, func(entry) {}); err != nil {
		return err
	}
	return s.listConversations(c.stdout)
}

// listConversations prints each conversation of the history with its
// newest message, newest first.
func (s *chatSession) listConversations(out io.Writer) error {
	type conv struct {
		last  entry
		with  entry // the newest entry that names the other side
		count int
	}
	byConv := map[string]*conv{}
	for _, e := range s.hist.entries {
		x := byConv[e.Conversation]
		if x == nil {
			x = &conv{}
			byConv[e.Conversation] = x
		}
		x.count++
		if x.last.ID == "" || !e.At.Before(x.last.At) {
			x.last = e
		}
		// A server notice (a payment's status, a group change) names no
		// one to answer: the conversation is still with whom it was.
		if e.Reply != "" && (x.with.ID == "" || !e.At.Before(x.with.At)) {
			x.with = e
		}
	}
	if len(byConv) == 0 {
		fmt.Fprintln(out, "no conversations yet")
		return nil
	}
	list := make([]*conv, 0, len(byConv))
	for _, x := range byConv {
		list = append(list, x)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].last.At.After(list[j].last.At) })
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WITH\tMESSAGES\tNEWEST")
	for _, x := range list {
		w := x.with
		if w.ID == "" {
			w = x.last
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\n", s.with(w), x.count, x.last.line(s.names))
	}
	return tw.Flush()
}

// chat is the interactive chat with one peer.
func chat(ctx context.Context, c *cli, o *opts, co *chatOpts, peer string) error {
	to, err := parsePeer(peer, co.org)
	if err != nil {
		return &usageError{cmd: "chat", msg: err.Error()}
	}
	s, err := c.openChat(ctx, o)
	if err != nil {
		return err
	}
	conv, err := s.mc.ConversationID(to)
	if err != nil {
		return err
	}
	var out sync.Mutex
	say := func(format string, args ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Fprintf(c.stdout, format, args...)
	}
	// The chat's stream reconnects by itself when the connection is lost
	// (a server restart or deploy, a network change) and then shows what
	// arrived meanwhile; it ends only when the session does.
	offline, everConnected := false, false
	st := s.mc.Listen(ctx, mclient.ListenOptions{
		Refresh: c.chatRefresh(o, s.st),
		OnChange: func(ch mclient.LiveChange) {
			switch {
			case !ch.Connected && !offline && !everConnected:
				offline = true
				say("(not connected: %s — trying again…)\n", notConnectedReason(ch.Err))
			case !ch.Connected && !offline:
				offline = true
				say("(connection to the server lost — reconnecting…)\n")
			case ch.Connected && (ch.Reconnected || offline):
				offline = false
				say("(reconnected)\n")
			}
			if ch.Connected {
				everConnected = true
			}
		},
	})
	defer st.Close()
	peerID, peerOrg := peerString(to)
	say("chat with %s — type a message and press Enter; /quit to leave\n", s.names.peer(peerID, peerOrg))
	for _, e := range s.hist.entries {
		if e.Conversation == conv {
			say("%s\n", e.line(s.names))
		}
	}

	// Incoming messages are printed as they arrive; those of this
	// conversation are read at once and get a read receipt.
	recvErr := make(chan error, 1)
	go func() {
		for {
			in, err := st.Receive(ctx)
			var re *mclient.ReceiveError
			switch {
			case errors.As(err, &re):
				say("(%s)\n", receiveProblem(re))
				continue
			case err != nil:
				recvErr <- err
				return
			}
			rb, isReceipt := in.Message.Body.(*kind.ReceiptBody)
			e, err := s.take(ctx, in)
			if err != nil {
				recvErr <- err
				return
			}
			switch {
			case isReceipt && in.Conversation == conv:
				mark := "✓"
				if rb.Status == "read" {
					mark = "✓✓"
				}
				say("  %s %s\n", mark, rb.Status)
			case e == nil:
			case in.Conversation == conv:
				say("%s\n", e.line(s.names))
				if err := st.Receipt(ctx, in, "read"); err != nil {
					say("(read receipt not sent: %v)\n", err)
				}
			default:
				say("(new message from %s in another conversation: kanal chat %s)\n", s.names.sender(*e), chatArgs(*e))
				if err := st.Receipt(ctx, in, "delivered"); err != nil {
					say("(receipt not sent: %v)\n", err)
				}
			}
		}
	}()

	lines := make(chan string)
	readErr := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(c.stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
		readErr <- sc.Err()
	}()
	for {
		select {
		case <-ctx.Done():
			return st.Ack(context.Background())
		case err := <-recvErr:
			var stopped *mclient.StoppedError
			if errors.As(err, &stopped) {
				return &chatEnded{stopped}
			}
			return fmt.Errorf("connection lost: %w", err)
		case err := <-readErr:
			if err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			return st.Ack(ctx)
		case line := <-lines:
			line = strings.TrimSpace(line)
			switch {
			case line == "":
			case line == "/quit":
				return st.Ack(ctx)
			default:
				if err := s.sendText(ctx, c, to, line, st); err != nil {
					say("(not sent: %v)\n", err)
					continue
				}
				say("[%s] me: %s\n", c.now().Local().Format("15:04"), line)
			}
		}
	}
}

// chatEnded is a chat whose stream stopped for good: the session ended
// and could not be renewed, or the device was revoked.
type chatEnded struct{ e *mclient.StoppedError }

func (e *chatEnded) Error() string {
	msg := "the chat ended. " + e.e.Reason
	if strings.Contains(e.e.Reason, "log in again") {
		msg += " Run 'kanal login', then open the chat again."
	}
	return msg
}

func (e *chatEnded) Unwrap() error { return e.e }

// chatRefresh renews the chat's session when its stream says the session
// ended or expired. Another kanal command may have renewed it meanwhile —
// the refresh token is then already used, and using it again would end
// the login — or logged out: the key store on disk says which.
func (c *cli) chatRefresh(o *opts, used *keystore.Store) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		disk, err := c.openStore(false)
		if err != nil {
			return "", err
		}
		if disk.Data.SessionToken == "" {
			return "", errNotLoggedIn
		}
		if disk.Data.SessionToken != used.Data.SessionToken {
			copySession(used, disk)
			return used.Data.SessionToken, used.Save()
		}
		refresh := getSecret(disk, secretRefreshToken)
		if refresh == "" {
			return "", errNotLoggedIn
		}
		sess, err := c.api(o, disk).Refresh(ctx, refresh)
		if err != nil {
			return "", err
		}
		if err := saveSession(used, sess); err != nil {
			return "", err
		}
		return sess.Token, nil
	}
}

// copySession takes the session another kanal command saved.
func copySession(to, from *keystore.Store) {
	to.Data.SessionToken = from.Data.SessionToken
	for _, k := range []string{secretRefreshToken, secretSessionExpires, secretLevel} {
		setSecret(to, k, getSecret(from, k))
	}
}

// notConnectedReason says in a few words why the chat's first connection
// failed: the server's own words when it refused, else that it cannot be
// reached.
func notConnectedReason(err error) string {
	var p *idclient.Problem
	if errors.As(err, &p) && p.Detail != "" {
		return p.Detail
	}
	return "the server cannot be reached"
}

// with is the other side of e's conversation, named; "kanal" for a
// conversation of server notices alone.
func (s *chatSession) with(e entry) string {
	if e.Reply == "" {
		return "kanal"
	}
	return s.names.peer(e.Reply, e.ReplyOrg)
}

// chatArgs is what to give 'kanal chat' to answer in e's conversation.
func chatArgs(e entry) string {
	if e.ReplyOrg != "" {
		return "--org " + e.ReplyOrg + " " + e.Reply
	}
	return e.Reply
}
