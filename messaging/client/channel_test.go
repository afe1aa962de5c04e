package client_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
)

// deployment is one or two kanald nodes sharing a database and a bus.
type deployment struct {
	nodes []*kanaldtest.Server
	dbURL string // PostgreSQL; empty for the embedded SQLite of nodes[0]
	env   []string
}

// startDeployment starts the embedded default (one node, SQLite,
// in-process NATS) or production (two nodes on one PostgreSQL schema and
// the local NATS, sharing the CA directory).
func startDeployment(t *testing.T, twoNodes bool) *deployment {
	t.Helper()
	if !twoNodes {
		return &deployment{nodes: []*kanaldtest.Server{kanaldtest.Start(t, kanaldBin)}}
	}
	base := dbtest.PostgresURL(t)
	natsURL := kanaldtest.NATSURL(t)
	d := &deployment{dbURL: dbtest.WithSchema(t, base, dbtest.NewSchema(t, base))}
	d.env = []string{"KANAL_DATABASE_URL=" + d.dbURL, "KANAL_NATS_URL=" + natsURL, "KANAL_CA_DIR=" + filepath.Join(t.TempDir(), "ca")}
	d.nodes = append(d.nodes, kanaldtest.Start(t, kanaldBin, d.env...))
	d.nodes = append(d.nodes, kanaldtest.Start(t, kanaldBin, d.env...))
	return d
}

func (d *deployment) node(i int) *kanaldtest.Server { return d.nodes[i%len(d.nodes)] }

// open opens the deployment's database, as an operator would.
func (d *deployment) open(t *testing.T) *db.DB {
	t.Helper()
	if d.dbURL == "" {
		return d.openFile(t, d.nodes[0].DataDir)
	}
	return openURL(t, d.dbURL)
}

// openFile opens the SQLite database in a kanald data directory.
func (d *deployment) openFile(t *testing.T, dataDir string) *db.DB {
	return openURL(t, "sqlite:"+filepath.Join(dataDir, "kanal.db"))
}

func openURL(t *testing.T, url string) *db.DB {
	t.Helper()
	dbh, err := db.Open(context.Background(), url, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dbh.Close() })
	return dbh
}

// password is the accounts' password: a login with it is a substantial
// session, which may enrol more devices.
const password = "correct horse battery staple 42"

// newAccount signs up with a password (so more devices can be enrolled,
// which needs a substantial session) and enrolls n devices, each logged
// in. Sign-up goes through node 0, whose data directory holds the mail.
func newAccount(t *testing.T, d *deployment, email string, n int) []*user {
	t.Helper()
	srv := d.nodes[0]
	ic, v := srv.Verify(t, email)
	if err := ic.WithToken(v.SetupToken).SetPassword(context.Background(), password, ""); err != nil {
		t.Fatal(err)
	}
	var out []*user
	enroller := ic.WithToken(v.SetupToken)
	for i := 0; i < n; i++ {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		out = append(out, srv.Enrol(t, v.AccountID, enroller, fmt.Sprintf("device %d", i+1), key, password))
		enroller = out[0].Identity
	}
	return out
}

// phone is one device with its SDK, connected to a node, collecting what
// it receives.
type phone struct {
	t    *testing.T
	name string
	u    *user
	sdk  *client.Client
	st   *client.Stream

	mu   sync.Mutex
	got  []*client.Incoming
	errs []error
	seen map[string]int // message id → times handed out
	wake chan struct{}
	done chan struct{}
}

func newPhone(t *testing.T, name string, u *user, base string, store client.Store) *phone {
	t.Helper()
	p := &phone{t: t, name: name, u: u, sdk: u.SDK(t, base, store), seen: map[string]int{}, wake: make(chan struct{}, 1)}
	if _, err := p.sdk.Publish(context.Background()); err != nil {
		t.Fatal(err)
	}
	return p
}

// connect opens the stream and collects messages until it closes.
func (p *phone) connect(ctx context.Context) {
	p.t.Helper()
	st, err := p.sdk.Connect(ctx)
	if err != nil {
		p.t.Fatalf("%s: connect: %v", p.name, err)
	}
	p.st, p.done = st, make(chan struct{})
	go func() {
		defer close(p.done)
		for {
			in, err := st.Receive(context.Background())
			var re *client.ReceiveError
			switch {
			case errors.As(err, &re):
				p.mu.Lock()
				p.errs = append(p.errs, err)
				p.mu.Unlock()
				continue
			case err != nil:
				return
			}
			p.mu.Lock()
			p.seen[in.Message.ID]++
			if p.seen[in.Message.ID] == 1 {
				p.got = append(p.got, in)
			}
			p.mu.Unlock()
			select {
			case p.wake <- struct{}{}:
			default:
			}
		}
	}()
	select {
	case <-st.Synced():
	case <-time.After(20 * time.Second):
		p.t.Fatalf("%s: no synced", p.name)
	}
}

func (p *phone) disconnect() {
	if p.st != nil {
		p.st.Close()
		<-p.done
		p.st = nil
	}
}

// texts returns the texts received so far, in order, that match filter.
func (p *phone) texts(filter func(*client.Incoming) bool) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, in := range p.got {
		if tb, ok := in.Message.Body.(*kind.TextBody); ok && filter(in) {
			out = append(out, tb.Text)
		}
	}
	return out
}

// waitTexts waits until filter matches n received texts.
func (p *phone) waitTexts(n int, filter func(*client.Incoming) bool) []string {
	p.t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		if got := p.texts(filter); len(got) >= n {
			return got
		}
		select {
		case <-p.wake:
		case <-deadline:
			p.mu.Lock()
			errs := p.errs
			p.mu.Unlock()
			p.t.Fatalf("%s: got %q, want %d (errors: %v)", p.name, p.texts(filter), n, errs)
		}
	}
}

func (p *phone) checkNoDuplicatesOrErrors() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, n := range p.seen {
		if n != 1 {
			p.t.Errorf("%s: message %s handed out %d times", p.name, id, n)
		}
	}
	if len(p.errs) > 0 {
		p.t.Errorf("%s: receive errors: %v", p.name, p.errs)
	}
}

func textMsg(t *testing.T, s string) *kind.Message {
	t.Helper()
	m, err := kind.New(client.NewMessageID(), time.Now(), &kind.TextBody{Text: s})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (p *phone) send(to client.Peer, text string) {
	p.t.Helper()
	if _, err := p.st.Send(context.Background(), to, textMsg(p.t, text)); err != nil {
		p.t.Fatalf("%s → %s: %v", p.name, to, err)
	}
}

func fromDevice(dev string) func(*client.Incoming) bool {
	return func(in *client.Incoming) bool { return in.SenderDevice == dev }
}

// TestChannel is the channel end to end on the real binaries: two citizens
// with two devices each and an office with two agents, spread over the
// nodes. Every message reaches every intended device exactly once, in
// per-sender order, decrypted; office answers are verified as the
// office's; the database never holds a plaintext; a revoked device gets
// nothing more and a device enrolled later is picked up by senders
// through the stale-devices answer, without anyone doing anything.
func TestChannel(t *testing.T) {
	for _, tc := range []struct {
		name     string
		twoNodes bool
	}{{"embedded", false}, {"two-nodes-postgres-nats", true}} {
		t.Run(tc.name, func(t *testing.T) { testChannel(t, tc.twoNodes) })
	}
}

func testChannel(t *testing.T, twoNodes bool) {
	ctx := context.Background()
	d := startDeployment(t, twoNodes)
	anna := newAccount(t, d, "anna@example.org", 2)
	ben := newAccount(t, d, "ben@example.org", 2)
	agents := []*user{newAccount(t, d, "agent1@buergeramt.example", 1)[0], newAccount(t, d, "agent2@buergeramt.example", 1)[0]}
	op := idclient.New(d.node(0).URL, nil).WithToken(d.node(0).OperatorToken(t))
	org, err := op.CreateOrg(ctx, "Bürgeramt Musterstadt", "office")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.VerifyOrg(ctx, org.OrgID); err != nil {
		t.Fatal(err)
	}
	for _, a := range agents {
		if _, err := op.AddMember(ctx, org.OrgID, a.AccountID, "agent"); err != nil {
			t.Fatal(err)
		}
	}
	// Devices alternate between the nodes, so every conversation crosses
	// from one node to the other.
	phones := map[string]*phone{}
	for i, x := range []struct {
		name string
		u    *user
	}{{"anna1", anna[0]}, {"anna2", anna[1]}, {"ben1", ben[0]}, {"ben2", ben[1]}, {"agent1", agents[0]}, {"agent2", agents[1]}} {
		phones[x.name] = newPhone(t, x.name, x.u, d.node(i).URL, client.NewMemoryStore())
	}
	for _, p := range phones {
		p.connect(ctx)
		defer p.disconnect()
	}
	anna1, anna2, ben1, ben2, agent1, agent2 := phones["anna1"], phones["anna2"], phones["ben1"], phones["ben2"], phones["agent1"], phones["agent2"]

	var nonce [8]byte
	rand.Read(nonce[:])
	marker := "klartext-" + hex.EncodeToString(nonce[:])

	// Direct: anna1 writes five messages to ben; both of ben's devices and
	// anna's other device (sync) get all five, in order.
	var want []string
	for i := 1; i <= 5; i++ {
		want = append(want, fmt.Sprintf("%s %d", marker, i))
		anna1.send(client.Peer{AccountID: ben[0].AccountID}, want[i-1])
	}
	for _, p := range []*phone{ben1, ben2, anna2} {
		if got := p.waitTexts(5, fromDevice(anna[0].DeviceID)); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("%s: %q, want %q", p.name, got, want)
		}
	}
	// ben2 answers; the reply goes to anna's devices and ben1.
	in := ben2.got[0]
	if in.SenderAccount != anna[0].AccountID || in.Reply != (client.Peer{AccountID: anna[0].AccountID}) {
		t.Fatalf("ben2 sees %+v", in)
	}
	ben2.send(in.Reply, "Hallo Anna")
	for _, p := range []*phone{anna1, anna2, ben1} {
		p.waitTexts(1, func(in *client.Incoming) bool { return in.SenderDevice == ben[1].DeviceID })
	}

	// Citizen to office: both agents get anna's message; agent2 answers as
	// the office; anna's devices see it verified as the Bürgeramt's, and
	// agent1 sees the colleague's answer too.
	anna2.send(client.Peer{OrgID: org.OrgID}, marker+" Antrag auf Anwohnerparken")
	var toOffice *client.Incoming
	for _, p := range []*phone{agent1, agent2, anna1} {
		p.waitTexts(1, fromDevice(anna[1].DeviceID))
	}
	agent2.mu.Lock()
	for _, x := range agent2.got {
		if x.SenderDevice == anna[1].DeviceID {
			toOffice = x
		}
	}
	agent2.mu.Unlock()
	if toOffice.Reply != (client.Peer{OrgID: org.OrgID, AccountID: anna[0].AccountID}) {
		t.Fatalf("agent's reply peer %+v", toOffice.Reply)
	}
	agent2.send(toOffice.Reply, "Ihr Antrag ist eingegangen")
	for _, p := range []*phone{anna1, anna2, agent1} {
		p.waitTexts(1, fromDevice(agents[1].DeviceID))
		p.mu.Lock()
		for _, x := range p.got {
			if x.SenderDevice == agents[1].DeviceID && (x.Org == nil || x.Org.OrgID != org.OrgID || x.Org.OrgName != "Bürgeramt Musterstadt") {
				t.Fatalf("%s: office answer not verified as the office's: %+v", p.name, x.Org)
			}
		}
		p.mu.Unlock()
	}
	// ben writes to the office too: his conversation is his own, anna's
	// devices see nothing of it.
	ben1.send(client.Peer{OrgID: org.OrgID}, "Frage zur Hundesteuer")
	agent1.waitTexts(1, fromDevice(ben[0].DeviceID))
	if got := anna1.texts(fromDevice(ben[0].DeviceID)); len(got) != 0 {
		t.Fatalf("anna sees ben's office conversation: %q", got)
	}

	// A group: anna creates it with ben and agent1; membership changes are
	// notices every member sees; a group message reaches every device.
	grp, err := anna1.sdk.CreateGroup(ctx, messaging.GroupMemberRequest{AccountID: ben[0].AccountID, Role: "member"},
		messaging.GroupMemberRequest{AccountID: agents[0].AccountID, Role: "member"})
	if err != nil {
		t.Fatal(err)
	}
	g := grp.GroupID
	// They are invited; each accepts.
	for _, p := range []*phone{ben1, agent1} {
		if _, err := p.sdk.AcceptInvitation(ctx, g); err != nil {
			t.Fatalf("%s accepts: %v", p.name, err)
		}
	}
	// anna1 encrypts only to the members it was told of: it waits for
	// the notices first (created, two invited, two added).
	waitNotices(t, anna1, g, 5)
	anna1.send(client.Peer{GroupID: g}, marker+" Treffen am Montag?")
	for _, p := range []*phone{anna2, ben1, ben2, agent1} {
		p.waitTexts(1, func(in *client.Incoming) bool { return in.Conversation == g })
	}
	if got := agent2.texts(func(in *client.Incoming) bool { return in.Conversation == g }); len(got) != 0 {
		t.Fatalf("a non-member got the group message: %q", got)
	}
	waitNotices(t, ben2, g, 4) // invited ben, member anna, added ben, added agent1

	// The database holds no plaintext: search every table.
	searchTables(t, d.open(t), marker)

	// Revocation: anna revokes her second device. Its stream is closed and
	// it receives nothing more; senders drop it through the 409 path.
	if err := anna[0].Identity.RevokeDevice(ctx, anna[1].DeviceID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-anna2.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the revoked device's stream stayed open")
	}
	if code := websocket.CloseStatus(anna2.st.Err()); code != 4001 {
		t.Fatalf("revoked stream closed with %v (%v), want 4001", code, anna2.st.Err())
	}
	anna2.st = nil
	if _, err := anna2.sdk.Connect(ctx); idclient.StatusOf(err) != 401 {
		t.Fatalf("a revoked device connects: %v", err)
	}
	before := len(anna2.texts(func(*client.Incoming) bool { return true }))
	ben1.send(client.Peer{AccountID: anna[0].AccountID}, "nach dem Widerruf")
	anna1.waitTexts(1, func(in *client.Incoming) bool { return in.SenderDevice == ben[0].DeviceID })

	// A device ben enrolls now is picked up by anna's next send, by itself.
	ben3 := newPhone(t, "ben3", enrollAnother(t, d, ben[0], "ben@example.org"), d.node(1).URL, client.NewMemoryStore())
	ben3.connect(ctx)
	defer ben3.disconnect()
	anna1.send(client.Peer{AccountID: ben[0].AccountID}, "für alle Geräte")
	for _, p := range []*phone{ben1, ben2, ben3} {
		p.waitTexts(1, func(in *client.Incoming) bool {
			return in.Message.Body.(*kind.TextBody).Text == "für alle Geräte"
		})
	}
	if after := len(anna2.texts(func(*client.Incoming) bool { return true })); after != before {
		t.Fatalf("the revoked device received %d more messages", after-before)
	}
	for _, p := range phones {
		p.checkNoDuplicatesOrErrors()
	}
	ben3.checkNoDuplicatesOrErrors()
}

func waitNotices(t *testing.T, p *phone, conv string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		p.mu.Lock()
		var got int
		for _, in := range p.got {
			if in.FromServer && in.Conversation == conv && in.Message.Kind == kind.GroupChange {
				got++
			}
		}
		p.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d group notices, want %d", p.name, got, n)
		}
		select {
		case <-p.wake:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// enrollAnother enrolls one more device for u's account, from u's device
// with a fresh substantial session.
func enrollAnother(t *testing.T, d *deployment, u *user, email string) *user {
	t.Helper()
	sess, err := idclient.New(d.node(0).URL, nil).Login(context.Background(), u.DeviceID, u.Key, password)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return d.node(0).Enrol(t, u.AccountID, u.Identity.WithToken(sess.Token), "new phone", key, "")
}

// searchTables reads every row of every table and fails if any column
// holds marker, as text or as hex.
func searchTables(t *testing.T, d *db.DB, marker string) {
	t.Helper()
	ctx := context.Background()
	q := `SELECT name FROM sqlite_master WHERE type = 'table'`
	if d.Dialect() == db.Postgres {
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`
	}
	rows, err := d.Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		tables = append(tables, n)
	}
	rows.Close()
	if len(tables) < 10 {
		t.Fatalf("only %d tables found: %v", len(tables), tables)
	}
	needles := [][]byte{[]byte(marker), []byte(hex.EncodeToString([]byte(marker)))}
	var scanned int
	for _, tbl := range tables {
		rs, err := d.Query(ctx, `SELECT * FROM "`+tbl+`"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rs.Columns()
		for rs.Next() {
			vals := make([]sql.RawBytes, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rs.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				for _, n := range needles {
					if bytes.Contains(bytes.ToLower(v), bytes.ToLower(n)) {
						t.Fatalf("table %s column %s holds the plaintext marker", tbl, cols[i])
					}
				}
			}
			scanned++
		}
		rs.Close()
	}
	if scanned == 0 {
		t.Fatal("no rows scanned")
	}
}
