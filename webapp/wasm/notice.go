//go:build js && wasm

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"syscall/js"
	"time"

	"github.com/kanal-server/kanal/messaging"
	mclient "github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
)

// Notices the page shows as status lines in a conversation. Each comes
// from something the SDK verified, never from what a message claims:
//
//   - a server notice (Incoming.FromServer), which the SDK accepts only
//     when the deployment's notary signed it for this device and the
//     conversation it came in (messaging/client VerifyNotice), and only
//     once: device.change (a device of this account has a new key: in the
//     account's conversation with itself) and org.change (a member of an
//     organisation this account is an agent of was erased: in the
//     organisation's conversation);
//   - the SDK's OnNewDevice: a contact's account, or this one, shows a
//     device this browser had not met, from certificates and the
//     transparency log's proofs the SDK checked (in the conversation with
//     that account);
//   - the SDK's OnKeyChange: a contact's device shows another identity
//     key than the one pinned (its safety number changed).
//
// A message a person sends with a notice's kind is not FromServer and is
// never a status line; a notice that does not verify is a ReceiveError
// and shows nothing. Other notices (group.change, payment.status, case
// and form notices) are left to the views that handle their kinds.

// noticeInfo is what a status line says; the page words it.
type noticeInfo struct {
	Account   string `json:"account,omitempty"`
	Device    string `json:"device,omitempty"`
	Org       string `json:"org,omitempty"`
	This      bool   `json:"this,omitempty"`       // the device is this browser
	Verified  bool   `json:"verified,omitempty"`   // a key change of a verified contact: sends are blocked
	NewDevice bool   `json:"new_device,omitempty"` // a key change that is a device added since verifying
}

// The entry kinds of status lines.
const (
	noticeDeviceKey = "notice.device-key"
	noticeOrgErased = "notice.org-erased"
	noticeNewDevice = "notice.new-device"
	noticeKeyChange = "notice.key-change"
)

// serverNotice is the status line of a verified server notice the page
// shows, or false.
func (a *app) serverNotice(in *mclient.Incoming, self, selfDevice string) (entry, bool) {
	if !in.FromServer {
		return entry{}, false
	}
	e := entry{ID: in.Message.ID, Conv: in.Conversation, From: "kanal", At: in.ServerTime.Format(time.RFC3339)}
	switch b := in.Message.Body.(type) {
	case *kind.DeviceChangeBody:
		// VerifyNotice holds it to this account and its own conversation.
		e.Peer, e.Kind = peer{Account: self}, noticeDeviceKey
		e.Notice = &noticeInfo{Account: b.AccountID, Device: b.DeviceID, This: b.DeviceID == selfDevice}
		e.Text = "device " + b.DeviceID + " of this account has a new key"
	case *kind.OrgChangeBody:
		// VerifyNotice holds it to the organisation's staff conversation.
		e.Peer, e.Kind = peer{Org: b.OrgID}, noticeOrgErased
		e.Notice = &noticeInfo{Account: b.AccountID, Org: b.OrgID}
		e.Text = b.AccountID + " is no longer a member of " + b.OrgID + " (account erased)"
	default:
		return entry{}, false
	}
	return e, true
}

// sdkNotice keeps a status line the SDK's callbacks raised and hands it
// to the page's listener, if it listens yet.
func (a *app) sdkNotice(self, account, k string, n *noticeInfo, text string) {
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	p := peer{Account: account}
	e := entry{ID: "notice_" + hex.EncodeToString(id), Conv: messaging.DirectConversation(self, account), Peer: p, From: "kanal",
		Kind: k, Text: text, At: time.Now().UTC().Format(time.RFC3339), Notice: n}
	if err := a.keep(e); err != nil {
		return
	}
	a.mu.Lock()
	cb := a.notify
	a.mu.Unlock()
	if cb.Type() == js.TypeFunction {
		s, _ := jsonString(e)
		cb.Invoke(s)
	}
}

// noticeHooks are the SDK's callbacks for the device of account self,
// device selfDevice.
func (a *app) noticeHooks(self, selfDevice string) (func(mclient.NewDevice), func(mclient.KeyChange)) {
	onNew := func(n mclient.NewDevice) {
		if n.AccountID == self && n.DeviceID == selfDevice {
			return
		}
		a.sdkNotice(self, n.AccountID, noticeNewDevice, &noticeInfo{Account: n.AccountID, Device: n.DeviceID},
			n.AccountID+" has a new device, "+n.DeviceID)
	}
	onKey := func(k mclient.KeyChange) {
		a.sdkNotice(self, k.AccountID, noticeKeyChange, &noticeInfo{Account: k.AccountID, Device: k.DeviceID, Verified: k.Verified, NewDevice: k.NewDevice},
			"the safety number of "+k.AccountID+" changed (device "+k.DeviceID+")")
	}
	return onNew, onKey
}

// markRead(peerJSON): the page shows the conversation; this sends read
// receipts for the messages in it that asked for a receipt
// (Client.WantsReceipt) and were not marked read yet, one receipt naming
// up to kind.MaxReceiptIDs messages. Best effort, as delivery receipts.
func (a *app) markRead(args []js.Value) (any, error) {
	var p peer
	if err := json.Unmarshal([]byte(args[0].String()), &p); err != nil {
		return nil, err
	}
	a.mu.Lock()
	var ids []string
	first := -1
	for i := range a.entries {
		e := &a.entries[i]
		if e.Unread && e.Peer == p {
			ids = append(ids, e.ID)
			e.Unread = false
			if first < 0 {
				first = i
			}
		}
	}
	var err error
	if first >= 0 {
		err = a.saveLocked(first)
	}
	live := a.live
	a.mu.Unlock()
	if err != nil || live == nil {
		return "ok", err
	}
	for len(ids) > 0 {
		n := min(len(ids), maxReceiptIDs)
		m, err := kind.New(mclient.NewMessageID(), time.Now(), &kind.ReceiptBody{Status: "read", IDs: ids[:n]})
		if err != nil {
			return nil, err
		}
		if _, err := live.Send(context.Background(), p.sdk(), m); err != nil {
			return nil, err
		}
		ids = ids[n:]
	}
	return "ok", nil
}
