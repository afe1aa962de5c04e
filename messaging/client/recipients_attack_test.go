package client_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/client"
)

// Ghost recipients. The adversary is the server, or whoever sits between
// the client and the server (a proxy, a load balancer, a TLS terminator):
// it answers a send with 409 stale-devices and adds, to the devices the
// message must be encrypted for, a real device of a third account. The
// device, its certificate and its prekey bundle are genuine — anyone with
// a session can claim them — so every signature checks; only the client's
// own idea of who belongs in the conversation can refuse it.
//
// ghostProxy is that adversary in front of the real kanald: it adds the
// ghost device to every 409 answer, takes every envelope addressed to the
// ghost out of the request (keeping the ciphertext, which is what the
// ghost would read) and forwards the rest, so that the real server
// accepts the send as a compromised one would.
type ghostProxy struct {
	URL          string
	ghost, owner string // the ghost device and its real account

	mu       sync.Mutex
	captured [][]byte // ciphertexts addressed to the ghost
	stored   int      // sends the server accepted
}

func newGhostProxy(t *testing.T, target, ghostDevice, ghostAccount string) *ghostProxy {
	t.Helper()
	g := &ghostProxy{ghost: ghostDevice, owner: ghostAccount}
	u, _ := url.Parse(target)
	p := httputil.NewSingleHostReverseProxy(u)
	p.ModifyResponse = g.rewriteAnswer
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/messages" {
			if err := g.stripRequest(r); err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
		}
		p.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	g.URL = ts.URL
	return g
}

func (g *ghostProxy) stripRequest(r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	var req messaging.SendRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return err
	}
	kept := req.Envelopes[:0]
	for _, e := range req.Envelopes {
		if e.DeviceID == g.ghost {
			ct, err := base64.StdEncoding.DecodeString(e.Ciphertext)
			if err != nil {
				return err
			}
			g.mu.Lock()
			g.captured = append(g.captured, ct)
			g.mu.Unlock()
			continue
		}
		kept = append(kept, e)
	}
	req.Envelopes = kept
	if body, err = json.Marshal(&req); err != nil {
		return err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.Header.Set("Content-Length", fmt.Sprint(len(body)))
	return nil
}

func (g *ghostProxy) rewriteAnswer(resp *http.Response) error {
	if resp.Request.URL.Path != "/v1/messages" {
		return nil
	}
	if resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK {
		g.mu.Lock()
		g.stored++
		g.mu.Unlock()
		return nil
	}
	if resp.StatusCode != http.StatusConflict {
		return nil
	}
	var p map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		return err
	}
	resp.Body.Close()
	if p["type"] != string(messaging.TypeStaleDevices) {
		return fmt.Errorf("409 of type %v", p["type"])
	}
	devices, _ := p["devices"].([]any)
	if !slices.Contains(devices, any(g.ghost)) {
		devices = append(devices, g.ghost)
	}
	p["devices"] = devices
	accounts, _ := p["accounts"].(map[string]any)
	if accounts == nil {
		accounts = map[string]any{}
	}
	accounts[g.ghost] = g.owner
	p["accounts"] = accounts
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.Header.Set("Content-Length", fmt.Sprint(len(b)))
	return nil
}

func (g *ghostProxy) ciphertexts() [][]byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.captured)
}

// checkGhostRefused asserts that a send through the proxy failed with a
// refusal naming the ghost, that no envelope was encrypted to the ghost
// and that the server stored nothing; if the ghost did get a ciphertext,
// it shows what the ghost reads with its own keys.
func checkGhostRefused(t *testing.T, g *ghostProxy, ghost *client.Client, sender string, err error) {
	t.Helper()
	for _, ct := range g.ciphertexts() {
		var m client.Message
		if m.UnmarshalBinary(ct) == nil {
			if pt, derr := ghost.Decrypt(context.Background(), sender, &m); derr == nil {
				t.Errorf("the ghost device reads the conversation: %.120s", pt)
			}
		}
		t.Fatalf("the ghost device got %d ciphertexts (send error: %v)", len(g.ciphertexts()), err)
	}
	var re *client.RecipientError
	if !errors.Is(err, client.ErrSendFailed) || !errors.Is(err, client.ErrNotRecipient) || !errors.As(err, &re) || re.DeviceID != g.ghost {
		t.Fatalf("send with a ghost recipient: %v, want a RecipientError for %s", err, g.ghost)
	}
	if g.stored != 0 {
		t.Fatalf("the server stored %d sends", g.stored)
	}
	t.Logf("refused: %v", err)
}

// noTextsFrom connects p and asserts that nothing from device arrived.
func noTextsFrom(t *testing.T, p *phone, device string) {
	t.Helper()
	p.connect(context.Background())
	defer p.disconnect()
	if got := p.texts(fromDevice(device)); len(got) != 0 {
		t.Fatalf("%s received %q", p.name, got)
	}
}

// TestGhostInDirectConversation: the server adds Carl's real device to
// Anna's conversation with Ben. Anna's SDK refuses it: Carl's device
// names neither Anna's nor Ben's account.
func TestGhostInDirectConversation(t *testing.T) {
	ctx := context.Background()
	d := startDeployment(t, false)
	srv := d.node(0)
	anna := newAccount(t, d, "anna@example.org", 1)[0]
	ben := newAccount(t, d, "ben@example.org", 1)[0]
	carl := newAccount(t, d, "carl@example.org", 1)[0]
	benPhone := newPhone(t, "ben", ben, srv.URL, client.NewMemoryStore())
	carlPhone := newPhone(t, "carl", carl, srv.URL, client.NewMemoryStore())

	t.Run("no session with the ghost yet", func(t *testing.T) {
		g := newGhostProxy(t, srv.URL, carl.DeviceID, carl.AccountID)
		annaSDK := anna.SDK(t, g.URL, client.NewMemoryStore())
		if _, err := annaSDK.Publish(ctx); err != nil {
			t.Fatal(err)
		}
		_, err := annaSDK.Send(ctx, client.Peer{AccountID: ben.AccountID}, textMsg(t, "nur für Ben"))
		checkGhostRefused(t, g, carlPhone.sdk, anna.DeviceID, err)
	})

	// Anna also talks to Carl, so her SDK already holds a session with
	// Carl's device: the server adds that device to her chat with Ben.
	t.Run("existing session with the ghost", func(t *testing.T) {
		g := newGhostProxy(t, srv.URL, carl.DeviceID, carl.AccountID)
		store := client.NewMemoryStore()
		annaSDK := anna.SDK(t, srv.URL, store)
		if _, err := annaSDK.Publish(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := annaSDK.Send(ctx, client.Peer{AccountID: carl.AccountID}, textMsg(t, "Hallo Carl")); err != nil {
			t.Fatal(err)
		}
		_, err := anna.SDK(t, g.URL, store).Send(ctx, client.Peer{AccountID: ben.AccountID}, textMsg(t, "nur für Ben"))
		checkGhostRefused(t, g, carlPhone.sdk, anna.DeviceID, err)
	})
	noTextsFrom(t, benPhone, anna.DeviceID)
}

// TestGhostInOrgConversation: the server adds to a citizen's conversation
// with the council a device of an account that is no member of it — an
// agent of another organisation, whose membership certificate is genuine,
// and a plain citizen — and to an agent's answer a device it says is the
// citizen's.
func TestGhostInOrgConversation(t *testing.T) {
	ctx := context.Background()
	d := startDeployment(t, false)
	srv := d.node(0)
	anna := newAccount(t, d, "anna@example.org", 1)[0]
	agent := newAccount(t, d, "agent@rat.example", 1)[0]
	organiser := newAccount(t, d, "organiser@rat.example", 1)[0]
	other := newAccount(t, d, "agent@buergeramt.example", 1)[0]
	carl := newAccount(t, d, "carl@example.org", 1)[0]
	op := idclient.New(srv.URL, nil).WithToken(srv.OperatorToken(t))
	newOrg := func(name, kind string, members ...struct {
		u    *user
		role string
	}) string {
		org, err := op.CreateOrg(ctx, name, kind)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := op.VerifyOrg(ctx, org.OrgID); err != nil {
			t.Fatal(err)
		}
		for _, m := range members {
			if _, err := op.AddMember(ctx, org.OrgID, m.u.AccountID, m.role); err != nil {
				t.Fatal(err)
			}
		}
		return org.OrgID
	}
	type member = struct {
		u    *user
		role string
	}
	council := newOrg("Rat der Stadt Musterstadt", "council", member{agent, "agent"}, member{organiser, "organiser"})
	newOrg("Bürgeramt Musterstadt", "office", member{other, "agent"})
	agentPhone := newPhone(t, "agent", agent, srv.URL, client.NewMemoryStore())
	newPhone(t, "organiser", organiser, srv.URL, client.NewMemoryStore())
	otherPhone := newPhone(t, "other", other, srv.URL, client.NewMemoryStore())
	carlPhone := newPhone(t, "carl", carl, srv.URL, client.NewMemoryStore())

	// A session with the ghost already exists when anna has talked to it
	// before: then no claim, where the real server would leave the ghost
	// out, stands in the way.
	annaVia := func(t *testing.T, proxy string, knows *user) *client.Client {
		store := client.NewMemoryStore()
		annaSDK := anna.SDK(t, srv.URL, store)
		if _, err := annaSDK.Publish(ctx); err != nil {
			t.Fatal(err)
		}
		if knows != nil {
			if _, err := annaSDK.Send(ctx, client.Peer{AccountID: knows.AccountID}, textMsg(t, "Hallo")); err != nil {
				t.Fatal(err)
			}
		}
		return anna.SDK(t, proxy, store)
	}
	for _, tc := range []struct {
		name    string
		ghost   *user
		phone   *phone
		session bool
	}{
		{"agent of another organisation", other, otherPhone, false},
		{"agent of another organisation, existing session", other, otherPhone, true},
		{"no member", carl, carlPhone, false},
		{"no member, existing session", carl, carlPhone, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGhostProxy(t, srv.URL, tc.ghost.DeviceID, tc.ghost.AccountID)
			var knows *user
			if tc.session {
				knows = tc.ghost
			}
			_, err := annaVia(t, g.URL, knows).Send(ctx, client.Peer{OrgID: council}, textMsg(t, "an den Rat"))
			checkGhostRefused(t, g, tc.phone.sdk, anna.DeviceID, err)
		})
	}
	t.Run("the agent answers; the ghost claims to be the citizen's", func(t *testing.T) {
		g := newGhostProxy(t, srv.URL, carl.DeviceID, anna.AccountID)
		agentSDK := agent.SDK(t, g.URL, client.NewMemoryStore())
		_, err := agentSDK.Send(ctx, client.Peer{OrgID: council, AccountID: anna.AccountID}, textMsg(t, "Antwort des Rats"))
		checkGhostRefused(t, g, carlPhone.sdk, agent.DeviceID, err)
	})
	t.Run("the agent answers; a non-member it has a session with", func(t *testing.T) {
		g := newGhostProxy(t, srv.URL, carl.DeviceID, carl.AccountID)
		store := client.NewMemoryStore()
		agentSDK := agent.SDK(t, srv.URL, store)
		if _, err := agentSDK.Send(ctx, client.Peer{AccountID: carl.AccountID}, textMsg(t, "Hallo Carl")); err != nil {
			t.Fatal(err)
		}
		_, err := agent.SDK(t, g.URL, store).Send(ctx, client.Peer{OrgID: council, AccountID: anna.AccountID}, textMsg(t, "Antwort des Rats"))
		checkGhostRefused(t, g, carlPhone.sdk, agent.DeviceID, err)
	})
	noTextsFrom(t, agentPhone, anna.DeviceID)

	// Without a ghost, the council's members — the organiser among them —
	// get anna's message.
	if _, err := annaVia(t, srv.URL, nil).Send(ctx, client.Peer{OrgID: council}, textMsg(t, "an den Rat")); err != nil {
		t.Fatal(err)
	}
}

// TestGhostInGroup: the server adds Carl's device to a group of Anna and
// Ben that Carl was never added to. Anna knows the members from the
// membership changes she received, and Carl is not among them.
func TestGhostInGroup(t *testing.T) {
	ctx := context.Background()
	d := startDeployment(t, false)
	srv := d.node(0)
	anna := newAccount(t, d, "anna@example.org", 1)[0]
	ben := newAccount(t, d, "ben@example.org", 1)[0]
	carl := newAccount(t, d, "carl@example.org", 1)[0]
	benPhone := newPhone(t, "ben", ben, srv.URL, client.NewMemoryStore())
	carlPhone := newPhone(t, "carl", carl, srv.URL, client.NewMemoryStore())
	g := newGhostProxy(t, srv.URL, carl.DeviceID, carl.AccountID)

	annaStore := client.NewMemoryStore()
	annaPhone := newPhone(t, "anna", anna, g.URL, annaStore)
	grp, err := annaPhone.sdk.CreateGroup(ctx, messaging.GroupMemberRequest{AccountID: ben.AccountID, Role: messaging.GroupMember})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := benPhone.sdk.AcceptInvitation(ctx, grp.GroupID); err != nil {
		t.Fatal(err)
	}
	annaPhone.connect(ctx)
	waitNotices(t, annaPhone, grp.GroupID, 3) // created, invited ben, added ben
	defer annaPhone.disconnect()

	_, err = annaPhone.sdk.Send(ctx, client.Peer{GroupID: grp.GroupID}, textMsg(t, "nur für die Gruppe"))
	checkGhostRefused(t, g, carlPhone.sdk, anna.DeviceID, err)
	noTextsFrom(t, benPhone, anna.DeviceID)

	// Without the ghost, the group message goes out.
	if _, err := anna.SDK(t, srv.URL, annaStore).Send(ctx, client.Peer{GroupID: grp.GroupID}, textMsg(t, "an alle")); err != nil {
		t.Fatal(err)
	}

	// Ben's device lost its state and publishes a new identity key: the
	// server tells it the group's members, and it writes to the group.
	benStore := client.NewMemoryStore()
	benAgain := newPhone(t, "ben-again", ben, srv.URL, benStore)
	benAgain.connect(ctx)
	defer benAgain.disconnect()
	waitMembers(t, benAgain.sdk, grp.GroupID, anna.AccountID, ben.AccountID)
	if _, err := benAgain.sdk.Send(ctx, client.Peer{GroupID: grp.GroupID}, textMsg(t, "wieder da")); err != nil {
		t.Fatal(err)
	}
	// Without what the notices said (a client from before they counted),
	// a send to the group fails: the server names anna's device, and
	// nothing told this device that anna is a member. It asks for the
	// member list, and then the message goes out. The device's stream is
	// closed first: a notice still on its way to it (the group's
	// "created", after the roster) would write the list again.
	benAgain.disconnect()
	if err := benStore.Delete("groups/" + grp.GroupID); err != nil {
		t.Fatal(err)
	}
	if _, err := ben.SDK(t, srv.URL, benStore).Send(ctx, client.Peer{GroupID: grp.GroupID}, textMsg(t, "x")); !errors.Is(err, client.ErrNotRecipient) {
		t.Fatalf("send without the member list: %v", err)
	}
	benAgain.connect(ctx)
	if err := benAgain.sdk.RequestRoster(ctx, grp.GroupID); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, benAgain.sdk, grp.GroupID, anna.AccountID, ben.AccountID)
	if _, err := benAgain.sdk.Send(ctx, client.Peer{GroupID: grp.GroupID}, textMsg(t, "noch einmal")); err != nil {
		t.Fatal(err)
	}
}

// waitMembers waits until c was told that accounts are the group's members.
func waitMembers(t *testing.T, c *client.Client, group string, accounts ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		m, err := c.GroupMembers(group)
		if err != nil {
			t.Fatal(err)
		}
		if len(m) == len(accounts) && !slices.ContainsFunc(accounts, func(a string) bool { _, ok := m[a]; return !ok }) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("members of %s: %v, want %v", group, m, accounts)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNewDeviceOfContactReported: a device Ben really enrolls is
// accepted, and Anna's SDK tells her that Ben has a new device; the
// devices it first met are not announced.
func TestNewDeviceOfContactReported(t *testing.T) {
	ctx := context.Background()
	d := startDeployment(t, false)
	srv := d.node(0)
	anna := newAccount(t, d, "anna@example.org", 1)[0]
	bens := newAccount(t, d, "ben@example.org", 1)
	newPhone(t, "ben1", bens[0], srv.URL, client.NewMemoryStore())

	var mu sync.Mutex
	var news []client.NewDevice
	annaSDK, err := client.New(client.Options{BaseURL: srv.URL, Token: anna.Token, AccountID: anna.AccountID, DeviceID: anna.DeviceID,
		DeviceKey: anna.Key, DeviceCertificate: anna.Certificate, CA: anna.CA, Store: client.NewMemoryStore(),
		OnNewDevice: func(n client.NewDevice) {
			mu.Lock()
			news = append(news, n)
			mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := annaSDK.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	to := client.Peer{AccountID: bens[0].AccountID}
	if _, err := annaSDK.Send(ctx, to, textMsg(t, "erste Nachricht")); err != nil {
		t.Fatal(err)
	}
	if len(news) != 0 {
		t.Fatalf("devices met for the first time reported as new: %+v", news)
	}
	ben2 := enrollAnother(t, d, bens[0], "ben@example.org")
	ben2Phone := newPhone(t, "ben2", ben2, srv.URL, client.NewMemoryStore())
	if _, err := annaSDK.Send(ctx, to, textMsg(t, "für beide Geräte")); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := slices.Clone(news)
	mu.Unlock()
	if len(got) != 1 || got[0] != (client.NewDevice{AccountID: bens[0].AccountID, DeviceID: ben2.DeviceID}) {
		t.Fatalf("new devices reported: %+v, want ben's %s", got, ben2.DeviceID)
	}
	ben2Phone.connect(ctx)
	defer ben2Phone.disconnect()
	if texts := ben2Phone.waitTexts(1, fromDevice(anna.DeviceID)); !strings.Contains(texts[0], "beide") {
		t.Fatalf("ben's new device got %q", texts)
	}
	// The next send announces nothing more.
	if _, err := annaSDK.Send(ctx, to, textMsg(t, "dritte")); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(news) != 1 {
		t.Fatalf("reported again: %+v", news)
	}
}

// TestGroupMemberWrittenIntoDatabase: the adversary can write the
// server's database and adds Carl to Anna and Ben's group as a row of the
// member table, without any member adding him. The server now names
// Carl's device for every group send, and a member list it sends out
// lists him; Anna's device, which has followed the group's changes since
// it created the group, encrypts to nobody those changes did not name.
func TestGroupMemberWrittenIntoDatabase(t *testing.T) {
	ctx := context.Background()
	d := startDeployment(t, false)
	srv := d.node(0)
	anna := newAccount(t, d, "anna@example.org", 1)[0]
	ben := newAccount(t, d, "ben@example.org", 1)[0]
	carl := newAccount(t, d, "carl@example.org", 1)[0]
	benPhone := newPhone(t, "ben", ben, srv.URL, client.NewMemoryStore())
	carlPhone := newPhone(t, "carl", carl, srv.URL, client.NewMemoryStore())
	annaPhone := newPhone(t, "anna", anna, srv.URL, client.NewMemoryStore())
	grp, err := annaPhone.sdk.CreateGroup(ctx, messaging.GroupMemberRequest{AccountID: ben.AccountID, Role: messaging.GroupMember})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := benPhone.sdk.AcceptInvitation(ctx, grp.GroupID); err != nil {
		t.Fatal(err)
	}
	annaPhone.connect(ctx)
	defer annaPhone.disconnect()
	waitNotices(t, annaPhone, grp.GroupID, 3)

	if _, err := d.open(t).Exec(ctx, `INSERT INTO messaging_group_members (group_id, account_id, role, added_at) VALUES ($1, $2, 'member', 0)`,
		grp.GroupID, carl.AccountID); err != nil {
		t.Fatal(err)
	}
	send := func() {
		t.Helper()
		_, err := annaPhone.sdk.Send(ctx, client.Peer{GroupID: grp.GroupID}, textMsg(t, "nur für die Gruppe"))
		var re *client.RecipientError
		if !errors.As(err, &re) || re.DeviceID != carl.DeviceID {
			t.Fatalf("send to a group with a member written into the database: %v", err)
		}
		t.Logf("refused: %v", err)
	}
	send()
	// Even a member list the device asks for itself, which now names
	// Carl, does not change what it learnt from the changes.
	if err := annaPhone.sdk.RequestRoster(ctx, grp.GroupID); err != nil {
		t.Fatal(err)
	}
	waitNotices(t, annaPhone, grp.GroupID, 6)
	send()
	if m, err := annaPhone.sdk.GroupMembers(grp.GroupID); err != nil || len(m) != 2 {
		t.Fatalf("anna's device takes the group's members to be %v (%v)", m, err)
	}
	noTextsFrom(t, carlPhone, anna.DeviceID)
}
