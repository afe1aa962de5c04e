//go:build js && wasm

package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"syscall/js"
	"time"
	"unicode/utf8"

	"github.com/kanal-server/kanal/messaging"
	mclient "github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
)

// Groups and attachments in the web app, through the SDK calls the CLI
// makes (kanal group …, kanal send --file, kanal get). The page
// (groups.js) renders what these return.
//
// A group's members are what the SDK was told by the group's signed
// group.change notices (Client.GroupMembers): the members Send encrypts
// to. Its name is not the server's: it travels end to end as a
// group.name message; the device keeps, per group, the last name it
// received and whether it is invited, a member, or gone.

const nameGroups = "app/groups" // id → groupRec

type groupRec struct {
	Name    string `json:"name,omitempty"`
	State   string `json:"state"`             // invited, member, left, removed, declined, uninvited
	Inviter string `json:"inviter,omitempty"` // who invited this account
}

// nameAttachment keeps an attachment's blob id, key and hash, by the
// sender ("me" for this account's own) and the message id; the page gets
// only the file's name, size and type.
func nameAttachment(from, id string) string { return "app/attachment/" + from + "/" + id }

// maxFile is the largest file the SDK sends: its blob must fit
// kind.MaxAttachment.
const maxFile = kind.MaxAttachment - kind.BlobOverhead

// fileInfo is what an entry shows of an attachment.
type fileInfo struct {
	Name string `json:"name"`
	Size int64  `json:"size"` // of the file, not the blob
	MIME string `json:"mime"`
}

type groupView struct {
	ID      string       `json:"id"`
	Name    string       `json:"name,omitempty"`
	State   string       `json:"state"`
	Role    string       `json:"role,omitempty"`
	Inviter string       `json:"inviter,omitempty"`
	Members []memberView `json:"members"`
}

type memberView struct {
	Account string `json:"account"`
	Name    string `json:"name,omitempty"`
	Role    string `json:"role"`
	Me      bool   `json:"me,omitempty"`
}

func (a *app) loadGroups() (map[string]groupRec, error) {
	a.mu.Lock()
	store := a.store
	a.mu.Unlock()
	if store == nil {
		return nil, errors.New("not unlocked")
	}
	out := map[string]groupRec{}
	b, err := store.Get(nameGroups)
	if errors.Is(err, mclient.ErrNotFound) {
		return out, nil
	} else if err != nil {
		return nil, err
	}
	return out, json.Unmarshal(b, &out)
}

// updateGroup changes the record of one group under groupMu.
func (a *app) updateGroup(id string, fn func(*groupRec)) error {
	a.groupMu.Lock()
	defer a.groupMu.Unlock()
	gs, err := a.loadGroups()
	if err != nil {
		return err
	}
	r := gs[id]
	fn(&r)
	gs[id] = r
	b, err := json.Marshal(gs)
	if err != nil {
		return err
	}
	return a.store.Put(nameGroups, b)
}

// groups() lists the groups this device knows, with the members the SDK
// encrypts to and their profile names.
func (a *app) groups([]js.Value) (any, error) {
	mc, err := a.client()
	if err != nil {
		return nil, err
	}
	a.groupMu.Lock()
	gs, err := a.loadGroups()
	a.groupMu.Unlock()
	if err != nil {
		return nil, err
	}
	me := a.st.AccountID
	out := []groupView{}
	for id, r := range gs {
		v := groupView{ID: id, Name: r.Name, State: r.State, Inviter: r.Inviter, Members: []memberView{}}
		members, err := mc.GroupMembers(id)
		if err != nil {
			return nil, err
		}
		for acc, role := range members {
			m := memberView{Account: acc, Role: role, Me: acc == me}
			if p, err := mc.Profile(acc); err == nil && p != nil {
				m.Name = p.DisplayName
			}
			if m.Me {
				v.Role = role
			}
			v.Members = append(v.Members, m)
		}
		sort.Slice(v.Members, func(i, j int) bool { return v.Members[i].Account < v.Members[j].Account })
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return jsonString(out)
}

// createGroup(name, membersJSON) creates a group with this account as its
// admin and invites the accounts (kanal group create); the name is kept
// and sent to each member who accepts.
func (a *app) createGroup(args []js.Value) (any, error) {
	name := strings.TrimSpace(args[0].String())
	var accounts []string
	if err := json.Unmarshal([]byte(args[1].String()), &accounts); err != nil {
		return nil, err
	}
	if err := (&kind.GroupNameBody{GroupID: "g_new", Name: name}).Validate(); err != nil {
		return nil, errors.New("group-name")
	}
	mc, err := a.client()
	if err != nil {
		return nil, err
	}
	members := []messaging.GroupMemberRequest{}
	seen := map[string]bool{a.st.AccountID: true}
	for _, acc := range accounts {
		acc = strings.TrimSpace(acc)
		if seen[acc] {
			continue
		}
		if !strings.HasPrefix(acc, "acc_") || len(acc) > kind.MaxID {
			return nil, fmt.Errorf("%q is not an account id (acc_…)", acc)
		}
		seen[acc] = true
		members = append(members, messaging.GroupMemberRequest{AccountID: acc, Role: messaging.GroupMember})
	}
	g, err := mc.CreateGroup(context.Background(), members...)
	if err != nil {
		return nil, err
	}
	if err := a.updateGroup(g.GroupID, func(r *groupRec) { r.Name, r.State = name, "member" }); err != nil {
		return nil, err
	}
	return g.GroupID, nil
}

// acceptGroup(id), declineGroup(id): kanal group accept, kanal group decline.
func (a *app) acceptGroup(args []js.Value) (any, error) {
	mc, err := a.client()
	if err != nil {
		return nil, err
	}
	id := args[0].String()
	if _, err := mc.AcceptInvitation(context.Background(), id); err != nil {
		return nil, err
	}
	return "ok", a.updateGroup(id, func(r *groupRec) { r.State = "member" })
}

func (a *app) declineGroup(args []js.Value) (any, error) {
	mc, err := a.client()
	if err != nil {
		return nil, err
	}
	id := args[0].String()
	if _, err := mc.DeclineInvitation(context.Background(), id); err != nil {
		return nil, err
	}
	return "ok", a.updateGroup(id, func(r *groupRec) { r.State = "declined" })
}

// leaveGroup(id): kanal group leave.
func (a *app) leaveGroup(args []js.Value) (any, error) {
	mc, err := a.client()
	if err != nil {
		return nil, err
	}
	id := args[0].String()
	if _, err := mc.RemoveGroupMember(context.Background(), id, a.st.AccountID); err != nil {
		return nil, err
	}
	return "ok", a.updateGroup(id, func(r *groupRec) { r.State = "left" })
}

// addGroupMember(id, account) invites an account (kanal group add);
// removeGroupMember(id, account) removes it or withdraws its invitation
// (kanal group remove). Admins only; the server says so otherwise.
func (a *app) addGroupMember(args []js.Value) (any, error) {
	mc, err := a.client()
	if err != nil {
		return nil, err
	}
	acc := strings.TrimSpace(args[1].String())
	if !strings.HasPrefix(acc, "acc_") {
		return nil, fmt.Errorf("%q is not an account id (acc_…)", acc)
	}
	_, err = mc.AddGroupMember(context.Background(), args[0].String(), acc, messaging.GroupMember)
	return "ok", err
}

func (a *app) removeGroupMember(args []js.Value) (any, error) {
	mc, err := a.client()
	if err != nil {
		return nil, err
	}
	_, err = mc.RemoveGroupMember(context.Background(), args[0].String(), args[1].String())
	return "ok", err
}

// deliver sends m to p on the live stream if it is open. A group's send
// is refused by the SDK (ErrNotRecipient) when the server names a device
// of an account this device has not yet been told is a member: the
// group.change notice saying so may still be on its way on the stream.
// It waits for it a little and tries again; a device that knows nobody
// of the group asks for the member list first.
func (a *app) deliver(ctx context.Context, mc *mclient.Client, p peer, m *kind.Message) error {
	a.mu.Lock()
	live := a.live
	a.mu.Unlock()
	send := func() error {
		var err error
		if live != nil {
			_, err = live.Send(ctx, p.sdk(), m)
		} else {
			_, err = mc.Send(ctx, p.sdk(), m)
		}
		return err
	}
	err := send()
	for try := 0; try < 10 && errors.Is(err, mclient.ErrNotRecipient) && p.Group != "" && live != nil; try++ {
		if known, gerr := mc.GroupMembers(p.Group); gerr == nil && len(known) == 0 && try == 0 {
			if rerr := mc.RequestRoster(ctx, p.Group); rerr != nil {
				return rerr
			}
		}
		time.Sleep(500 * time.Millisecond)
		err = send()
	}
	return err
}

// groupEntry completes an entry the stream delivered: a group change or
// name (kept for the group's record, the body for the page), an
// attachment (its key kept in the store, its name, size and type for the
// page).
func (a *app) groupEntry(in *mclient.Incoming, e *entry) {
	me := a.st.AccountID
	switch b := in.Message.Body.(type) {
	case *kind.GroupChangeBody:
		if !in.FromServer {
			return // only the server's signed notice says who is a member
		}
		e.Body, _ = json.Marshal(b)
		_ = a.updateGroup(b.GroupID, func(r *groupRec) {
			switch {
			case b.AccountID != me:
			case b.Op == "invited" && r.State != "member":
				r.State, r.Inviter = "invited", b.By
			case b.Op == "created" || b.Op == "added" || b.Op == "member" || b.Op == "role":
				r.State = "member"
			case b.Op == "removed" || b.Op == "left" || b.Op == "declined" || b.Op == "uninvited":
				r.State = b.Op
			}
			if r.State == "" {
				r.State = "member"
			}
		})
		if b.Op == "added" && b.By == me && b.AccountID != me {
			go a.sendGroupName(b.GroupID)
		}
	case *kind.GroupNameBody:
		if in.FromServer || in.Reply.GroupID != b.GroupID {
			return // a name only counts in its own group's conversation
		}
		e.Body, _ = json.Marshal(b)
		e.Text = b.Name
		_ = a.updateGroup(b.GroupID, func(r *groupRec) {
			r.Name = b.Name
			if r.State == "" {
				r.State = "member"
			}
		})
	case *kind.AttachmentBody:
		a.keepAttachment(e.From, e.ID, b, e)
	}
}

// keepAttachment stores the attachment's key and hash under the entry and
// gives the entry what the page shows.
func (a *app) keepAttachment(from, id string, b *kind.AttachmentBody, e *entry) {
	raw, err := json.Marshal(b)
	if err != nil {
		return
	}
	a.mu.Lock()
	store := a.store
	a.mu.Unlock()
	if store.Put(nameAttachment(from, id), raw) != nil {
		return
	}
	e.File = &fileInfo{Name: b.Name, Size: b.PlainSize(), MIME: b.MIME}
	e.Text = b.Name
}

// sendGroupName sends the group's name to its members, as the admin who
// invited one that has just accepted.
func (a *app) sendGroupName(id string) {
	gs, err := a.loadGroups()
	if err != nil || gs[id].Name == "" {
		return
	}
	mc, err := a.client()
	if err != nil {
		return
	}
	m, err := kind.New(mclient.NewMessageID(), time.Now(), &kind.GroupNameBody{GroupID: id, Name: gs[id].Name})
	if err != nil {
		return
	}
	_ = a.deliver(context.Background(), mc, peer{Group: id}, m) // a lost name leaves the group unnamed for the newcomer
}

// attachLimit() is the largest file the page may send, in bytes.
func (a *app) attachLimit([]js.Value) (any, error) { return maxFile, nil }

// attach(peerJSON, name, mime, bytes) encrypts the file, uploads the blob
// and sends the attachment message (kanal send --file).
func (a *app) attach(args []js.Value) (any, error) {
	ctx := context.Background()
	var p peer
	if err := json.Unmarshal([]byte(args[0].String()), &p); err != nil {
		return nil, err
	}
	name, mimeType := args[1].String(), strings.ToLower(args[2].String())
	if n := args[3].Get("length").Int(); n > maxFile {
		return nil, fmt.Errorf("file-too-large")
	} else if n == 0 {
		return nil, errors.New("file-empty")
	}
	for len(name) > kind.MaxName {
		_, n := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-n]
	}
	// What the message will say is checked before anything is uploaded:
	// a type the message cannot carry becomes application/octet-stream.
	check := func(mimeType string) error {
		return (&kind.AttachmentBody{BlobID: "b_check", Key: base64.StdEncoding.EncodeToString(make([]byte, 32)),
			SHA256: strings.Repeat("0", 64), Size: 1, MIME: mimeType, Name: name}).Validate()
	}
	if check(mimeType) != nil {
		mimeType = "application/octet-stream"
	}
	if err := check(mimeType); err != nil {
		return nil, err
	}
	data := bytesOf(args[3])
	mc, err := a.client()
	if err != nil {
		return nil, err
	}
	body, err := mc.UploadAttachment(ctx, data, mimeType, name)
	if err != nil {
		return nil, err
	}
	m, err := kind.New(mclient.NewMessageID(), time.Now(), body)
	if err != nil {
		return nil, err
	}
	if err := a.deliver(ctx, mc, p, m); err != nil {
		return nil, err
	}
	conv, _ := mc.ConversationID(p.sdk())
	e := entry{ID: m.ID, Conv: conv, Peer: p, From: "me", Kind: string(m.Kind), At: m.SentAt.Format(time.RFC3339), State: "sent"}
	a.keepAttachment("me", m.ID, body, &e)
	if err := a.keep(e); err != nil {
		return nil, err
	}
	return jsonString(e)
}

// download(id, from) fetches the blob of an attachment this device
// received (or sent), checks its size and SHA-256 against the message and
// decrypts it (kanal get). A blob that does not match is refused with
// "attachment-mismatch", and no byte of it reaches the page.
func (a *app) download(args []js.Value) (any, error) {
	id, from := args[0].String(), args[1].String()
	a.mu.Lock()
	store := a.store
	a.mu.Unlock()
	if store == nil {
		return nil, errors.New("not unlocked")
	}
	raw, err := store.Get(nameAttachment(from, id))
	if err != nil {
		return nil, fmt.Errorf("no file %s has reached this device", id)
	}
	var b kind.AttachmentBody
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, err
	}
	mc, err := a.client()
	if err != nil {
		return nil, err
	}
	data, err := mc.DownloadAttachment(context.Background(), &b)
	if errors.Is(err, mclient.ErrAttachment) {
		return nil, errors.New("attachment-mismatch")
	} else if err != nil {
		return nil, err
	}
	return bytesToJS(data), nil
}
