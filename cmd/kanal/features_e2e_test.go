package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/kanaldtest"
	mclient "github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
)

// inProcess opens home's key store with the CLI's own code, in this
// process: a modified client, for the attacks the kanal binary will not
// make.
func (s *session) inProcess(t *testing.T, home string) *chatSession {
	t.Helper()
	env := map[string]string{"KANAL_HOME": filepath.Join(s.work, home)}
	for _, e := range s.env {
		k, v, _ := strings.Cut(e, "=")
		env[k] = v
	}
	var out bytes.Buffer
	c := &cli{env: func(k string) string { return env[k] }, stdin: strings.NewReader(""), stdout: &out, stderr: &out, now: time.Now}
	cs, err := c.openChat(context.Background(), &opts{})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// sendRaw sends body from home to peer as a modified client would.
func (s *session) sendRaw(t *testing.T, home string, to mclient.Peer, body kind.Body) {
	t.Helper()
	cs := s.inProcess(t, home)
	m, err := kind.New("evil-"+newKey(), time.Now(), body)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.mc.Send(context.Background(), to, m); err != nil {
		t.Fatal(err)
	}
}

// TestAttachmentsCLI: a file sent with 'kanal send --file' and saved with
// 'kanal get', byte for byte; an existing file is not overwritten.
func TestAttachmentsCLI(t *testing.T) {
	srv := kanaldtest.Start(t, bin.kanald)
	s := newSession(t, srv)
	s.run(append(signUpSteps(s, srv, "alice", "alice@example.org", "ALICE"), signUpSteps(s, srv, "bob", "bob@example.org", "BOB")...))
	report := bytes.Repeat([]byte("%PDF-1.7 Bescheid über Ihren Antrag\n"), 3000)
	if err := os.WriteFile(filepath.Join(s.work, "bescheid.pdf"), report, 0o600); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(s.work, "empty.txt"), nil, 0o600)
	s.run([]step{
		{cmd: "kanal send --file bescheid.pdf $BOB", want: []string{`sent "bescheid.pdf" (111.0 kB); the other side saves it with: kanal get `},
			set: map[string]string{"ATT": `kanal get (\S+)`}},
		{cmd: "kanal send --file nothing-here.pdf $BOB", exit: 1, want: []string{"cannot read nothing-here.pdf: no such file or directory"}},
		{cmd: "kanal send --file empty.txt $BOB", exit: 1, want: []string{"empty.txt is empty: there is nothing to send"}},
		{cmd: "kanal send --file bescheid.pdf $BOB 'and a text'", exit: 2, want: []string{"usage: kanal send"}},
		{home: "bob", cmd: "kanal inbox", want: []string{`file "bescheid.pdf" (111.0 kB, application/pdf) — kanal get $ATT`}},
		// The work directory already holds alice's bescheid.pdf.
		{home: "bob", cmd: "kanal get $ATT", exit: 1, want: []string{"bescheid.pdf already exists here; choose another name with -o"}},
		{home: "bob", cmd: "kanal get -o bob.pdf $ATT", want: []string{"Saved bob.pdf (111.0 kB, application/pdf)."}},
		{do: func(t *testing.T) {
			got, err := os.ReadFile(filepath.Join(s.work, "bob.pdf"))
			if err != nil || !bytes.Equal(got, report) {
				t.Fatalf("bob.pdf is not the file alice sent (%d bytes, %v)", len(got), err)
			}
		}},
		{home: "bob", cmd: "kanal get cli-nosuchthing", exit: 1, want: []string{"no file cli-nosuchthing has reached this device"}},
	})
}

// TestAttackAttachmentName: the name a file arrives with is the sender's
// word. A name that climbs out of the directory, hides as a dot file, or
// carries a newline and a right-to-left override to fake a line on the
// screen is shown defused and saved as a plain file in the current
// directory.
func TestAttackAttachmentName(t *testing.T) {
	srv := kanaldtest.Start(t, bin.kanald)
	s := newSession(t, srv)
	s.run(append(signUpSteps(s, srv, "mallory", "mallory@example.org", "MALLORY"), signUpSteps(s, srv, "bob", "bob@example.org", "BOB")...))
	os.WriteFile(filepath.Join(s.work, "payload"), []byte("echo pwned\n"), 0o600)
	inbox := filepath.Join(s.work, "inbox")
	os.Mkdir(inbox, 0o700)
	s.run([]step{
		{home: "mallory", cmd: "kanal send --file payload --name ../../.bashrc $BOB", set: map[string]string{"A1": `kanal get (\S+)`}},
	})
	cs := s.inProcess(t, "mallory")
	a, err := cs.mc.UploadAttachment(context.Background(), []byte("fake"), "text/plain", "x\n[09:00] kanal: your bank asks you to pay now\u202etxt.exe")
	if err != nil {
		t.Fatal(err)
	}
	s.sendRaw(t, "mallory", mclient.Peer{AccountID: s.vars["BOB"]}, a)
	s.run([]step{
		{home: "bob", cmd: "kanal inbox", want: []string{`file "../../.bashrc"`, `file "x?[09:00] kanal: your bank asks you to pay now?txt.exe"`},
			not: []string{"\n[09:00] kanal:", "\u202e"}, set: map[string]string{"A2": `pay now\?txt\.exe" .* kanal get (\S+)`}},
		{home: "bob", cmd: "kanal get $A1", want: []string{"Saved bashrc (11 bytes, text/plain)."}},
		{home: "bob", cmd: "kanal get $A2", want: []string{"Saved x[09_00] kanal_ your bank asks you to pay nowtxt.exe (4 bytes, text/plain)."}},
	})
	for _, p := range []string{filepath.Join(s.work, "..", ".bashrc"), filepath.Join(s.work, "..", "..", ".bashrc"), filepath.Join(s.work, ".bashrc")} {
		if _, err := os.Stat(p); err == nil {
			t.Fatalf("the attachment was written to %s", p)
		}
	}
	if b, err := os.ReadFile(filepath.Join(s.work, "bashrc")); err != nil || string(b) != "echo pwned\n" {
		t.Fatalf("bashrc: %q, %v", b, err)
	}
	for _, c := range []struct{ name, want string }{
		{"../../etc/passwd", "passwd"}, {`..\..\win.ini`, "win.ini"}, {"...", "attachment-id1"}, {"", "attachment-id1"},
		{" .hidden ", "hidden"}, {"a/b/", "attachment-id1"}, {"\u202egnp.exe", "gnp.exe"}, {"a:b?.txt", "a_b_.txt"},
		{strings.Repeat("ä", 80), strings.Repeat("ä", 50)},
	} {
		if got := safeFileName(c.name, "id1"); got != c.want {
			t.Errorf("safeFileName(%q) = %q, want %q", c.name, got, c.want)
		}
	}
}

// pollWorld: alice, bob and carol in a group, dave outside it.
func pollWorld(t *testing.T) *session {
	srv := kanaldtest.Start(t, bin.kanald)
	s := newSession(t, srv)
	var steps []step
	for _, p := range []string{"alice", "bob", "carol", "dave"} {
		steps = append(steps, signUpSteps(s, srv, p, p+"@example.org", strings.ToUpper(p))...)
	}
	s.run(steps)
	s.run([]step{
		{cmd: "kanal group create $BOB $CAROL", set: map[string]string{"G": `(?m)^(g_[0-9a-f]{32})$`}},
		{home: "bob", cmd: "kanal group accept $G", want: []string{"You are now a member"}},
		{home: "carol", cmd: "kanal group accept $G", want: []string{"You are now a member"}},
		{cmd: "kanal poll create $G 'Wann treffen wir uns?' Montag Dienstag Mittwoch", want: []string{"Opened a poll with 3 options."},
			set: map[string]string{"P": `(?m)^(poll-\S+)$`}},
	})
	return s
}

// TestPollsCLI: a poll opened in a group, voted on by number and by text,
// a vote changed, closed by its creator; every member counts the same.
func TestPollsCLI(t *testing.T) {
	s := pollWorld(t)
	s.run([]step{
		{home: "bob", cmd: "kanal inbox", want: []string{"poll: Wann treffen wir uns? 1) Montag 2) Dienstag 3) Mittwoch — kanal poll vote $P <number>"}},
		{home: "bob", cmd: "kanal poll vote $P 2", want: []string{`Voted "Dienstag" in "Wann treffen wir uns?".`}},
		{home: "carol", cmd: "kanal poll vote $P montag", want: []string{`Voted "Montag"`}},
		{home: "carol", cmd: "kanal poll vote $P Montag Dienstag", exit: 2, want: []string{"this poll takes one option"}},
		{home: "carol", cmd: "kanal poll vote $P 7", exit: 2, want: []string{`"7" is not an option of this poll: give 1 to 3 or an option's text`}},
		{home: "carol", cmd: "kanal poll vote $P 2", want: []string{`Voted "Dienstag"`}},
		{cmd: "kanal poll results $P", want: []string{"Wann treffen wir uns? (open, 2 voters, opened by $ALICE)", "1) Montag    0 votes", "2) Dienstag  2 votes", "3) Mittwoch  0 votes"}},
		{home: "carol", cmd: "kanal poll close $P", exit: 1, want: []string{"only the account that opened poll $P ($ALICE) can close it"}},
		{cmd: "kanal poll close $P", want: []string{`Closed poll "Wann treffen wir uns?".`, "(closed, 2 voters"}},
		{home: "bob", cmd: "kanal poll vote $P 1", exit: 1, want: []string{"poll $P is closed"}},
		{home: "bob", cmd: "kanal poll results $P", want: []string{"(closed, 2 voters", "2) Dienstag  2 votes"}},
		{home: "bob", cmd: "kanal poll list", want: []string{"$P", "$G", "closed", "Wann treffen wir uns?"}},
		{cmd: "kanal poll create $G 'Nur eine Option?' Ja", exit: 2, want: []string{"a poll needs a conversation, a question and at least two options"}},
		{cmd: "kanal poll create $G 'Doppelt?' Ja Ja", exit: 2, want: []string{`option "Ja" given twice`}},
	})
}

// TestAttackPollVoteFromAnotherConversation: dave, outside the group,
// learns the poll's id and sends alice a vote for it in their own
// conversation. Alice's tally does not count it, and says why.
func TestAttackPollVoteFromAnotherConversation(t *testing.T) {
	s := pollWorld(t)
	s.sendRaw(t, "dave", mclient.Peer{AccountID: s.vars["ALICE"]}, &kind.PollBody{Op: "vote", PollID: s.vars["P"], Choices: []int{2}})
	s.run([]step{
		{home: "bob", cmd: "kanal poll vote $P 1"},
		{cmd: "kanal inbox", want: []string{"not counted: a vote for poll $P from another conversation"}},
		{cmd: "kanal poll results $P", want: []string{"(open, 1 voter,", "1) Montag    1 vote", "3) Mittwoch  0 votes"}},
	})
}

// TestAttackPollCloseByAnother: carol, a member of the group, sends a
// close for alice's poll with a modified client. No member takes it: the
// poll stays open and bob's later vote counts.
func TestAttackPollCloseByAnother(t *testing.T) {
	s := pollWorld(t)
	s.run([]step{{home: "carol", cmd: "kanal inbox"}})
	s.sendRaw(t, "carol", mclient.Peer{GroupID: s.vars["G"]}, &kind.PollBody{Op: "close", PollID: s.vars["P"]})
	s.run([]step{
		{home: "bob", cmd: "kanal inbox", want: []string{"not counted: $CAROL tried to close poll $P, which $ALICE opened"}},
		{home: "bob", cmd: "kanal poll vote $P 3", want: []string{`Voted "Mittwoch"`}},
		{cmd: "kanal poll results $P", want: []string{"(open, 1 voter,", "3) Mittwoch  1 vote"}},
	})
}

// TestPushCLI: a device subscribes for Web Push, shows and replaces the
// subscription, and removes it; a subscription the server refuses says
// why.
func TestPushCLI(t *testing.T) {
	srv := kanaldtest.Start(t, bin.kanald)
	s := newSession(t, srv)
	s.run(signUpSteps(s, srv, "alice", "alice@example.org", "ALICE"))
	os.WriteFile(filepath.Join(s.work, "sub.json"), []byte(`{"endpoint":"https://push.example.net/wpush/v2/abc","expirationTime":null,"keys":{"p256dh":"BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM","auth":"tBHItJI5svbpez7KI4CCXg"}}`), 0o600)
	s.run([]step{
		{cmd: "kanal push show", want: []string{"endpoint   none: this device has no push subscription", "vapid key  B"}},
		{cmd: "kanal push subscribe https://push.example.org/send/1", want: []string{"Made a subscription key for testing", "private key ", "Subscribed: pushes for this device go to https://push.example.org/send/1."}},
		{cmd: "kanal push show", want: []string{"endpoint   https://push.example.org/send/1"}},
		{cmd: "kanal push subscribe --json sub.json", want: []string{"Replaced this device's push subscription: pushes go to https://push.example.net/wpush/v2/abc."}},
		{cmd: "kanal push show", want: []string{"endpoint   https://push.example.net/wpush/v2/abc"}},
		// Refused: not https, and a key that is not a P-256 point. Nothing changes.
		{cmd: "kanal push subscribe http://push.example.org/x", exit: 1, want: []string{"kanal: push subscribe: "}},
		{cmd: "kanal push subscribe --p256dh AAAA --auth tBHItJI5svbpez7KI4CCXg https://push.example.org/x", exit: 1, want: []string{"p256dh"}},
		{cmd: "kanal push subscribe --p256dh AAAA https://push.example.org/x", exit: 2, want: []string{"give both --p256dh and --auth, or neither"}},
		{cmd: "kanal push show", want: []string{"endpoint   https://push.example.net/wpush/v2/abc"}},
		{cmd: "kanal push unsubscribe", want: []string{"This device has no push subscription now."}},
		{cmd: "kanal push show", want: []string{"endpoint   none"}},
	})
}

// TestOrgMembersCLI: an organisation's owner adds and removes members
// with their own session, without the operator.
func TestOrgMembersCLI(t *testing.T) {
	s, _ := orgWorld(t)
	s.run([]step{
		{home: "owner", cmd: "kanal org member add --role agent $ORG agent@example.org", want: []string{"Added account $AGENT to $ORG as agent (1 membership certificate)."}},
		{home: "agent", cmd: "kanal whoami", want: []string{"$ORG Bürgeramt Worms (agent)"}},
		{home: "owner", cmd: "kanal org member remove $ORG $AGENT", want: []string{"Removed account $AGENT from $ORG."}},
		{home: "agent", cmd: "kanal whoami", not: []string{"Bürgeramt Worms (agent)"}},
	})
}

// TestAttackOrgMemberByNonOwner: an agent of the organisation, and an
// account outside it, try to add themselves or others, or to remove the
// owner. The server refuses each, and the members stay as they were.
func TestAttackOrgMemberByNonOwner(t *testing.T) {
	s, _ := orgWorld(t)
	s.run([]step{
		{home: "owner", cmd: "kanal org member add --role agent $ORG agent@example.org", want: []string{"as agent"}},
		{home: "agent", cmd: "kanal org member add --role owner $ORG agent@example.org", exit: 1, want: []string{"kanal: org member add: "}},
		{home: "agent", cmd: "kanal org member add --role agent $ORG mallory@example.org", exit: 1, want: []string{"kanal: org member add: "}},
		{home: "agent", cmd: "kanal org member remove $ORG $OWNER", exit: 1, want: []string{"kanal: org member remove: "}},
		{home: "mallory", cmd: "kanal org member add --role owner $ORG mallory@example.org", exit: 1, want: []string{"kanal: org member add: "}},
		{home: "mallory", cmd: "kanal org member remove $ORG $AGENT", exit: 1, want: []string{"kanal: org member remove: "}},
		{home: "owner", cmd: "kanal directory org $ORG", want: []string{"$OWNER", "owner", "$AGENT", "agent"}, not: []string{"$MALLORY"}},
		{home: "mallory", cmd: "kanal whoami", not: []string{"Bürgeramt Worms"}},
	})
}

// orgWorld: a verified office with an owner the operator added, and two
// other accounts, agent and mallory.
func orgWorld(t *testing.T) (*session, *kanaldtest.Server) {
	srv := kanaldtest.Start(t, bin.kanald)
	s := newSession(t, srv)
	var steps []step
	for _, p := range []string{"owner", "agent", "mallory"} {
		steps = append(steps, signUpSteps(s, srv, p, p+"@example.org", strings.ToUpper(p))...)
	}
	s.run(steps)
	s.vars["OPTOKEN"] = srv.OperatorToken(t)
	s.run([]step{
		{cmd: "kanal admin org create --kind office 'Bürgeramt Worms'", env: []string{"KANAL_OPERATOR_TOKEN=$OPTOKEN"}, set: map[string]string{"ORG": `(?m)^(org_\S+)$`}},
		{cmd: "kanal admin org verify $ORG", env: []string{"KANAL_OPERATOR_TOKEN=$OPTOKEN"}},
		{cmd: "kanal admin org member add --role owner $ORG owner@example.org", env: []string{"KANAL_OPERATOR_TOKEN=$OPTOKEN"}},
	})
	return s, srv
}

// TestPayCheckoutWithoutCardProvider: on a kanald without a card
// provider, 'kanal pay checkout' says so plainly and points at the bank
// transfer, instead of printing GiroCode data as if it were a URL.
func TestPayCheckoutWithoutCardProvider(t *testing.T) {
	srv := kanaldtest.Start(t, bin.kanald)
	s := newSession(t, srv)
	s.run(append(signUpSteps(s, srv, "mia", "mia@example.org", "MIA"), signUpSteps(s, srv, "carl", "carl@example.org", "CARL")...))
	s.vars["OPTOKEN"] = srv.OperatorToken(t)
	s.vars["DUE"] = time.Now().AddDate(0, 0, 14).Format(time.DateOnly)
	op := []string{"KANAL_OPERATOR_TOKEN=$OPTOKEN"}
	s.run([]step{
		{cmd: "kanal admin org create --kind merchant 'Bäckerei Korn'", env: op, set: map[string]string{"ORG": `(?m)^(org_\S+)$`}},
		{cmd: "kanal admin org verify $ORG", env: op},
		{cmd: "kanal admin org member add --role seller $ORG mia@example.org", env: op},
		{home: "carl", cmd: "kanal inbox"},
		{home: "mia", cmd: "kanal pay request --org $ORG --to $CARL --amount 12.50 --creditor 'Bäckerei Korn' --iban DE02120300000000202051 --purpose Brot --due $DUE",
			set: map[string]string{"REQ": `(?m)^(pr_\S+)`}},
		{home: "carl", cmd: "kanal pay checkout $REQ", exit: 1,
			want: []string{"this server takes no card payments (it has no card provider): pay by bank transfer; 'kanal pay qr $REQ > girocode.png' makes the GiroCode to scan"},
			not:  []string{"BCD\n", "SCT"}},
		{home: "carl", cmd: "kanal help pay checkout", want: []string{"without such a provider"}},
		// Amounts typed in euros come back in euros.
		{home: "mia", cmd: "kanal pay request --org $ORG --to $CARL --amount 1000000000.00 --creditor 'Bäckerei Korn' --iban DE02120300000000202051 --purpose Brot --due $DUE",
			exit: 1, want: []string{"EUR 999999999.99"}, not: []string{"cents", "99999999999"}},
	})
}

// TestFeaturesCLI is the city team's walk through the features that had
// no command: a group, a file and a poll in it, and a push subscription,
// each through the real binary against kanald.
func TestFeaturesCLI(t *testing.T) {
	srv := kanaldtest.Start(t, bin.kanald)
	s := newSession(t, srv)
	s.run(append(signUpSteps(s, srv, "alice", "alice@example.org", "ALICE"), signUpSteps(s, srv, "bob", "bob@example.org", "BOB")...))
	os.WriteFile(filepath.Join(s.work, "plan.txt"), []byte("Treffen im Rathaus, Raum 2\n"), 0o600)
	s.run([]step{
		{cmd: "kanal group create $BOB", set: map[string]string{"G": `(?m)^(g_[0-9a-f]{32})$`}},
		{home: "bob", cmd: "kanal group accept $G", want: []string{"You are now a member"}},
		{cmd: "kanal send --file plan.txt $G", want: []string{`sent "plan.txt"`}, set: map[string]string{"ATT": `kanal get (\S+)`}},
		{cmd: "kanal poll create $G 'Passt Dienstag?' Ja Nein", set: map[string]string{"P": `(?m)^(poll-\S+)$`}},
		{home: "bob", cmd: "kanal inbox", want: []string{`file "plan.txt" (27 bytes, text/plain) — kanal get $ATT`, "poll: Passt Dienstag? 1) Ja 2) Nein"}},
		{home: "bob", cmd: "kanal get -o - $ATT", want: []string{"Treffen im Rathaus, Raum 2"}},
		{home: "bob", cmd: "kanal poll vote $P Ja", want: []string{`Voted "Ja"`}},
		{cmd: "kanal poll results $P", want: []string{"1 voter", "1) Ja    1 vote"}},
		{cmd: "kanal conversations", want: []string{"$G"}},
		{home: "bob", cmd: "kanal push subscribe https://push.example.org/bob", want: []string{"Subscribed"}},
		{home: "bob", cmd: "kanal push show", want: []string{"https://push.example.org/bob"}},
		{cmd: "kanal survey --help", want: []string{"survey close"}},
	})
}
