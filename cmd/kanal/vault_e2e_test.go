package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kanal-server/kanal/internal/kanaldtest"
)

// TestVaultSession is the vault end to end with the real kanald and kanal
// binaries: a citizen with two devices puts a document on one and reads it
// on the other; a third device enrolled later reads it once an existing
// device has re-wrapped its key; an office issues a signed parking permit
// into her vault through the chat, which verifies offline; she shares it
// with another office in the chat and withdraws the share.
func TestVaultSession(t *testing.T) {
	srv := kanaldtest.Start(t, bin.kanald)
	s := &session{
		t:    t,
		work: t.TempDir(),
		vars: map[string]string{},
		env: []string{
			"PATH=" + os.Getenv("PATH"),
			"KANAL_SERVER=" + srv.URL,
			"KANAL_PASSPHRASE=correct horse battery staple",
			"KANAL_PASSWORD=Tr0ub4dor&3-but-longer",
		},
	}
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(s.work, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("meldung.pdf", "%PDF-1.7 Meldebescheinigung Erika Mustermann, Hauptstraße 1")
	write("meldung2.pdf", "%PDF-1.7 Meldebescheinigung Erika Mustermann, Nebenstraße 2")
	write("permit.json", `{"zone":"B","plate":"WO-KA 42","holder":"Erika Mustermann"}`)
	var signup []step
	for _, u := range []struct{ home, email, v string }{{"erika", "erika@example.org", "ERIKA"}, {"clara", "clara@example.org", "CLARA"}, {"otto", "otto@example.org", "OTTO"}} {
		signup = append(signup,
			step{home: u.home, cmd: "kanal register " + u.email},
			step{do: func(t *testing.T) { s.vars["CODE"] = srv.Code(t, u.email) }},
			step{home: u.home, cmd: "kanal verify $CODE", set: map[string]string{u.v: `account (\S+) `}},
			step{home: u.home, cmd: "kanal password"},
			step{home: u.home, cmd: "kanal device enroll --name " + u.home},
			step{home: u.home, cmd: "kanal login", want: []string{"level substantial"}},
		)
	}
	// addDevice enrols another device of Erika's, approved by her first.
	addDevice := func(home, name string) []step {
		return []step{
			{home: home, cmd: "kanal device request --key ed25519 > " + home + ".csr"},
			{home: "erika", cmd: "kanal device approve --name " + name + " " + home + ".csr > " + home + ".pem", want: []string{"Approved device"}},
			{home: home, cmd: "kanal device install " + home + ".pem", want: []string{"Installed device"}},
			{home: home, cmd: "kanal login", want: []string{"Logged in"}},
		}
	}
	op := []string{"KANAL_OPERATOR_TOKEN=$OPTOKEN"}
	steps := append(signup, step{do: func(t *testing.T) { s.vars["OPTOKEN"] = srv.OperatorToken(t) }})
	steps = append(steps, []step{
		{cmd: "kanal admin org create --kind office 'Straßenverkehrsamt Worms'", env: op, set: map[string]string{"SVA": `(?m)^(org_\S+)$`}},
		{cmd: "kanal admin org verify $SVA", env: op},
		{cmd: "kanal admin org member add --role agent $SVA clara@example.org", env: op},
		{cmd: "kanal admin org create --kind office 'Ordnungsamt Worms'", env: op, set: map[string]string{"OA": `(?m)^(org_\S+)$`}},
		{cmd: "kanal admin org verify $OA", env: op},
		{cmd: "kanal admin org member add --role agent $OA otto@example.org", env: op},
	}...)
	steps = append(steps, addDevice("laptop", "laptop")...)
	steps = append(steps, []step{
		// The laptop comes online once and publishes its keys.
		{home: "laptop", cmd: "kanal vault ls", want: []string{"0 documents"}},
		// Must-show 1: put on one device, read on the other.
		{home: "erika", cmd: "kanal vault put meldung.pdf --title Meldebescheinigung --tag wohnen --folder Amt",
			want: []string{`Stored "Meldebescheinigung"`, "readable by 2 devices"}, set: map[string]string{"DOC": `(?m)^(vd_\S+)$`}},
		{home: "laptop", cmd: "kanal vault ls", want: []string{"$DOC v1", "Meldebescheinigung", "folder Amt", "tags wohnen", "1 documents"}},
		{home: "laptop", cmd: "kanal vault get $DOC --out -", want: []string{"Meldebescheinigung Erika Mustermann, Hauptstraße 1"}},
		{home: "laptop", cmd: "kanal vault put meldung2.pdf --to-version $DOC --title 'Meldebescheinigung neu'", want: []string{"version 2"}},
		{home: "erika", cmd: "kanal vault versions $DOC", want: []string{"v1 ", "v2 ", "Meldebescheinigung neu"}},
		{home: "erika", cmd: "kanal vault get $DOC --version 1 --out -", want: []string{"Hauptstraße 1"}},
	}...)
	// A third device, enrolled later: nothing is readable on it until a
	// device of the account re-wraps (the server holds no key to give).
	steps = append(steps, addDevice("tablet", "tablet")...)
	steps = append(steps, []step{
		{home: "tablet", cmd: "kanal vault ls", want: []string{"not readable on this device yet"}},
		{home: "tablet", cmd: "kanal vault get $DOC --out -", exit: 1, want: []string{"no key for this device yet"}},
		{home: "erika", cmd: "kanal vault ls", want: []string{"Re-wrapped 2 keys", "Meldebescheinigung neu"}},
		{home: "tablet", cmd: "kanal vault get $DOC --out -", want: []string{"Nebenstraße 2"}},

		// The office issues a signed parking permit into her vault
		// through the chat.
		{home: "otto", cmd: "kanal vault ls", want: []string{"0 documents"}},
		{home: "clara", cmd: "kanal vault issue permit.json --org $SVA --to $ERIKA --kind parking-permit --title 'Bewohnerparkausweis Zone B' --valid 8760h",
			want: []string{"Issued \"Bewohnerparkausweis Zone B\""}, set: map[string]string{"PERMIT": `(?m)^(vd_\S+)$`}},
		{home: "tablet", cmd: "kanal vault receive --out permit.jws", want: []string{"Issued document \"Bewohnerparkausweis Zone B\" (parking-permit) of Straßenverkehrsamt Worms for $ERIKA verifies"}},
		{home: "erika", cmd: "kanal vault ls", want: []string{"$PERMIT v1", "Bewohnerparkausweis Zone B issued by $SVA"}},
		{home: "erika", cmd: "kanal directory ca > ca.pem"},
		// Offline, with nothing but the CA certificate.
		{home: "nobody", cmd: "kanal verify permit.jws --ca ca.pem", want: []string{"Issued document", "verifies.", "Bewohnerparkausweis Zone B",
			"issued by Straßenverkehrsamt Worms ($SVA) to account $ERIKA", "role agent"}},
		{do: func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(s.work, "permit.jws"))
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0x01
			os.WriteFile(filepath.Join(s.work, "altered.jws"), b, 0o644)
		}},
		{home: "nobody", cmd: "kanal verify altered.jws --ca ca.pem", exit: 1, not: []string{"verifies."}},
		// She shares it with another office in the chat, which reads and
		// verifies it; then she withdraws the share.
		{home: "erika", cmd: "kanal vault share $PERMIT --org $OA", want: []string{"Shared \"Bewohnerparkausweis Zone B\""}, set: map[string]string{"SHARE": `(?m)^(vs_\S+)$`}},
		{home: "otto", cmd: "kanal vault receive --out shared.jws", want: []string{"from $ERIKA", "verifies: signed by device"}},
		{home: "otto", cmd: "kanal vault shares --org $OA", want: []string{"received $SHARE $PERMIT v1 from $ERIKA"}},
		{home: "erika", cmd: "kanal vault shares", want: []string{"made     $SHARE $PERMIT v1 to $OA"}},
		{home: "erika", cmd: "kanal vault unshare $SHARE", want: []string{"Withdrew share $SHARE"}},
		{home: "otto", cmd: "kanal inbox", want: []string{"withdrew the share of document $PERMIT", "stays with you"}},
		{home: "otto", cmd: "kanal vault shares --org $OA", want: []string{"(withdrawn"}},
		// A stranger's device cannot read her documents.
		{home: "otto", cmd: "kanal -v vault get $DOC", exit: 1, want: []string{"(urn:kanal:problem:not-found)"}},
		{home: "erika", cmd: "kanal vault rm $DOC", want: []string{"Deleted $DOC"}},
		{home: "laptop", cmd: "kanal -v vault get $DOC", exit: 1, want: []string{"(urn:kanal:problem:not-found)"}},
	}...)
	s.run(steps)
}
