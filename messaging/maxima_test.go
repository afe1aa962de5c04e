package messaging_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"sort"
	"testing"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/messaging"
)

// The limits agree: the largest group and the largest office, with the
// other side's own devices, are addressed by one send; a claim page is
// smaller than a send, and a full office takes few enough pages that a
// citizen's first message stays within the claim rate.
func TestLimitsFitOneSend(t *testing.T) {
	group := messaging.MaxGroupMembers*identity.MaxDevices - 1 // every device but the sending one
	if group > messaging.MaxSendDevices {
		t.Errorf("a group of %d members × %d devices needs %d envelopes, a send carries %d",
			messaging.MaxGroupMembers, identity.MaxDevices, group, messaging.MaxSendDevices)
	}
	office := identity.MaxOrgMembers*identity.MaxDevices + identity.MaxDevices - 1 // agents, and the citizen's other devices
	if office > messaging.MaxSendDevices {
		t.Errorf("an office of %d members × %d devices and a citizen need %d envelopes, a send carries %d",
			identity.MaxOrgMembers, identity.MaxDevices, office, messaging.MaxSendDevices)
	}
	if messaging.MaxClaimFilter < messaging.MaxSendDevices {
		t.Errorf("a claim may name %d devices, a send's stale-devices answer up to %d", messaging.MaxClaimFilter, messaging.MaxSendDevices)
	}
	pages := (identity.MaxOrgMembers*identity.MaxDevices + messaging.MaxClaimDevices - 1) / messaging.MaxClaimDevices
	// The first message to a full group claims once per other member and
	// once for the sender's own account; to a full office, every page.
	if need := max(messaging.MaxGroupMembers, pages+1); need > messaging.MaxClaimsPerWindow {
		t.Errorf("a first message at the maxima takes %d claims, the window allows %d", need, messaging.MaxClaimsPerWindow)
	}
}

// publishMany enrolls and publishes n devices of account, ids
// "<account>-d<i>", directly on the service (a thousand of them over
// HTTP would test nothing more).
func (e *sendEnv) publishMany(account string, n int) []*device {
	e.t.Helper()
	out := make([]*device, n)
	for i := range out {
		d := e.dir.enroll(e.t, account, fmt.Sprintf("%s-d%d", account, i), i%2 == 0)
		if _, err := e.svc.Publish(context.Background(), d.caller(), d.publishRequest(e.t)); err != nil {
			e.t.Fatal(err)
		}
		out[i] = d
	}
	return out
}

// claimAll claims every page of req as dev, checking the pages follow
// each other, and returns the devices of the bundles.
func (e *sendEnv) claimAll(dev *device, req messaging.ClaimRequest) (devices []string, pages int) {
	e.t.Helper()
	for {
		resp, err := e.svc.Claim(context.Background(), dev.caller(), &req)
		if err != nil {
			e.t.Fatalf("claim page %d: %v", pages+1, err)
		}
		pages++
		if len(resp.Bundles) > messaging.MaxClaimDevices {
			e.t.Fatalf("a page of %d bundles", len(resp.Bundles))
		}
		for _, b := range resp.Bundles {
			devices = append(devices, b.Bundle.DeviceID)
		}
		if resp.Next == "" {
			return devices, pages
		}
		if len(resp.Bundles) != messaging.MaxClaimDevices || resp.Next != resp.Bundles[len(resp.Bundles)-1].Bundle.DeviceID {
			e.t.Fatalf("page %d: %d bundles, next %q", pages, len(resp.Bundles), resp.Next)
		}
		req.After = resp.Next
	}
}

// sendTo sends one envelope to each of devices and checks every one
// was stored.
func (e *sendEnv) sendTo(from *device, to messaging.SendTo, clientID string, devices []string) {
	e.t.Helper()
	ct := base64.StdEncoding.EncodeToString(make([]byte, 1500)) // about a first message's size
	req := messaging.SendRequest{To: to, ClientID: clientID, Class: "message"}
	for _, d := range devices {
		req.Envelopes = append(req.Envelopes, messaging.SendEnvelope{DeviceID: d, Ciphertext: ct})
	}
	st, _, out := e.post(from, req)
	if st != 201 {
		e.t.Fatalf("send of %d envelopes: %d %v", len(devices), st, out)
	}
	if ids := out["envelope_ids"].(map[string]any); len(ids) != len(devices) {
		e.t.Fatalf("%d envelopes stored, want %d", len(ids), len(devices))
	}
	// Every device holds the sender's envelope (each sender here sends once).
	var n int
	if err := e.d.QueryRow(context.Background(), `SELECT COUNT(DISTINCT device_id) FROM mailbox WHERE sender_device = $1`, from.id).Scan(&n); err != nil || n != len(devices) {
		e.t.Fatalf("%d devices received the message (%v), want %d", n, err, len(devices))
	}
}

// A group of MaxGroupMembers accounts with identity.MaxDevices devices
// each, and an office of identity.MaxOrgMembers agents with as many
// devices, are messaged: the sender learns every device, claims every
// bundle (an office in pages), and one send reaches every device; the
// office's agent answers the citizen the same way.
func TestGroupAndOfficeAtTheMaxima(t *testing.T) {
	if testing.Short() {
		t.Skip("enrolls two thousand devices")
	}
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		e := newSendEnv(t, d, 0, true)

		// The group.
		owner := e.publishMany("owner", identity.MaxDevices)
		var members []string
		for i := range messaging.MaxGroupMembers - 1 {
			a := fmt.Sprintf("member%02d", i)
			e.publishMany(a, identity.MaxDevices)
			members = append(members, a)
		}
		g := e.makeGroup(owner[0], members...)
		st, _, out := e.post(owner[0], messaging.SendRequest{To: messaging.SendTo{GroupID: g}, ClientID: "g0", Class: "message"})
		wantProblem(t, st, out, 409, messaging.TypeStaleDevices)
		want := strs(out["devices"])
		if len(want) != messaging.MaxGroupMembers*identity.MaxDevices-1 {
			t.Fatalf("%d devices to address", len(want))
		}
		var claimed []string
		for _, a := range append([]string{"owner"}, members...) {
			got, pages := e.claimAll(owner[0], messaging.ClaimRequest{AccountID: a})
			if pages != 1 {
				t.Fatalf("claim of %s: %d pages", a, pages)
			}
			claimed = append(claimed, got...)
		}
		sort.Strings(claimed)
		if !slices.Equal(claimed, want) {
			t.Fatalf("claimed %d bundles, %d devices to address", len(claimed), len(want))
		}
		e.sendTo(owner[0], messaging.SendTo{GroupID: g}, "g1", want)

		// The office.
		var agents []*device
		for i := range identity.MaxOrgMembers {
			agents = append(agents, e.publishMany(fmt.Sprintf("agent%02d", i), identity.MaxDevices)...)
		}
		e.dir.addOrg(t, "office", agents...)
		citizen := e.publishMany("citizen", identity.MaxDevices)
		got, pages := e.claimAll(citizen[0], messaging.ClaimRequest{OrgID: "office"})
		if wantPages := (len(agents) + messaging.MaxClaimDevices - 1) / messaging.MaxClaimDevices; pages != wantPages {
			t.Fatalf("%d pages, want %d", pages, wantPages)
		}
		own, _ := e.claimAll(citizen[0], messaging.ClaimRequest{AccountID: "citizen"})
		toOffice := append(slices.Clone(got), own...)
		sort.Strings(toOffice)
		if len(toOffice) != len(agents)+identity.MaxDevices-1 || len(slices.Compact(slices.Clone(toOffice))) != len(toOffice) {
			t.Fatalf("claimed %d bundles for the office and the citizen's devices", len(toOffice))
		}
		e.sendTo(citizen[0], messaging.SendTo{OrgID: "office"}, "o1", toOffice)

		// An agent answers: the other agent devices and the citizen's.
		var answer []string
		for _, a := range agents[1:] {
			answer = append(answer, a.id)
		}
		for _, c := range citizen {
			answer = append(answer, c.id)
		}
		sort.Strings(answer)
		e.sendTo(agents[0], messaging.SendTo{OrgID: "office", AccountID: "citizen"}, "o2", answer)

		// One envelope more than a send carries is refused whole.
		over := make([]string, messaging.MaxSendDevices+1)
		for i := range over {
			over[i] = fmt.Sprintf("x%04d", i)
		}
		st, _, out = e.post(owner[0], messaging.SendRequest{To: messaging.SendTo{GroupID: g}, ClientID: "g2", Class: "message", Envelopes: envelopesFor(over...)})
		if st != 413 {
			t.Fatalf("%d envelopes: %d %v", len(over), st, out)
		}
	})
}

// A claim answers at most MaxClaimDevices bundles a page, in device id
// order: an office of 21 agents with ten devices each (too many for one
// page) is claimed in two, every device exactly once; a cursor of
// another form is refused; every page counts against the claim rate.
func TestClaimLimits(t *testing.T) {
	dbtest.Run(t, sendSets, func(t *testing.T, d *db.DB) {
		e := newSendEnv(t, d, 0, false)
		ctx := context.Background()
		var agents []*device
		for i := range 21 {
			agents = append(agents, e.publishMany(fmt.Sprintf("agent%02d", i), identity.MaxDevices)...)
		}
		e.dir.addOrg(t, "office", agents...)
		citizen := e.enroll("citizen", "citizen-phone", false)
		got, pages := e.claimAll(citizen, messaging.ClaimRequest{OrgID: "office"})
		if pages != 2 || len(got) != 210 || len(slices.Compact(slices.Clone(got))) != 210 || !slices.IsSorted(got) {
			t.Fatalf("%d pages, %d bundles", pages, len(got))
		}
		// Narrowed to named devices, the pages count only those.
		some := []string{agents[3].id, agents[150].id, agents[209].id}
		resp, err := e.svc.Claim(ctx, citizen.caller(), &messaging.ClaimRequest{OrgID: "office", Devices: some})
		if err != nil || len(resp.Bundles) != 3 || resp.Next != "" {
			t.Fatalf("narrowed claim: %v %+v", err, resp)
		}
		// Bad cursors and filters: 400, nothing claimed.
		for _, body := range []any{
			map[string]any{"org_id": "office", "after": "not a device id!"},
			map[string]any{"org_id": "office", "devices": make([]string, messaging.MaxClaimFilter+1)},
		} {
			st, out := e.call(citizen, "POST", "/v1/prekeys/claim", body)
			if st != 400 {
				t.Fatalf("%v: %d %v", body, st, out)
			}
		}
		// A cursor past the last device: an empty page.
		resp, err = e.svc.Claim(ctx, citizen.caller(), &messaging.ClaimRequest{OrgID: "office", After: "zzz"})
		if err != nil || len(resp.Bundles) != 0 || resp.Next != "" {
			t.Fatalf("past the end: %v %+v", err, resp)
		}
		// Every page counts: 4 claims so far.
		for i := 4; i < messaging.MaxClaimsPerWindow; i++ {
			if _, err := e.svc.Claim(ctx, citizen.caller(), &messaging.ClaimRequest{AccountID: "agent00"}); err != nil {
				t.Fatalf("claim %d: %v", i+1, err)
			}
		}
		st, out := e.call(citizen, "POST", "/v1/prekeys/claim", messaging.ClaimRequest{OrgID: "office"})
		if st != 429 {
			t.Fatalf("claim over the limit: %d %v", st, out)
		}
	})
}

// BenchmarkSendToMaximalGroup measures one send to a group at its
// maxima — MaxGroupMembers accounts with identity.MaxDevices devices
// each, 999 envelopes of 1.5 KB (about a first message) — through
// POST /v1/messages: the member and device lookups, the published-keys
// check and one transaction storing every envelope.
func BenchmarkSendToMaximalGroup(b *testing.B) {
	for _, eng := range benchEngines() {
		b.Run(eng.name, func(b *testing.B) {
			d := eng.open(b, sendSets...)
			e := newSendEnv(b, d, 1<<30, true)
			owner := e.publishMany("owner", identity.MaxDevices)
			var members []string
			for i := range messaging.MaxGroupMembers - 1 {
				a := fmt.Sprintf("member%02d", i)
				e.publishMany(a, identity.MaxDevices)
				members = append(members, a)
			}
			g := e.makeGroup(owner[0], members...)
			st, _, out := e.post(owner[0], messaging.SendRequest{To: messaging.SendTo{GroupID: g}, ClientID: "probe", Class: "message"})
			if st != 409 {
				b.Fatalf("probe: %d %v", st, out)
			}
			devices := strs(out["devices"])
			ct := base64.StdEncoding.EncodeToString(make([]byte, 1500))
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				req := messaging.SendRequest{To: messaging.SendTo{GroupID: g}, ClientID: fmt.Sprint("c", i), Class: "message"}
				for _, dev := range devices {
					req.Envelopes = append(req.Envelopes, messaging.SendEnvelope{DeviceID: dev, Ciphertext: ct})
				}
				if st, _, out := e.post(owner[0], req); st != 201 {
					b.Fatalf("send: %d %v", st, out)
				}
			}
			b.ReportMetric(float64(b.N*len(devices))/b.Elapsed().Seconds(), "envelopes/s")
		})
	}
}

// makeGroup creates a group of owner (admin) and the accounts (members,
// who accept their invitations) and returns its id.
func (e *sendEnv) makeGroup(owner *device, accounts ...string) string {
	e.t.Helper()
	var req messaging.CreateGroupRequest
	for _, a := range accounts {
		req.Members = append(req.Members, messaging.GroupMemberRequest{AccountID: a, Role: messaging.GroupMember})
	}
	g, err := e.svc.CreateGroup(context.Background(), owner.caller(), &req)
	if err != nil {
		e.t.Fatalf("create group: %v", err)
	}
	for _, a := range accounts {
		if _, err := e.svc.AcceptInvitation(context.Background(), messaging.Caller{AccountID: a, DeviceID: a + "-d0"}, g.GroupID); err != nil {
			e.t.Fatalf("%s accepts: %v", a, err)
		}
	}
	return g.GroupID
}
