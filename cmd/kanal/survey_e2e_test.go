package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity"
	"github.com/kanal-server/kanal/identity/ca"
	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/messaging"
	mclient "github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/surveys"
	sclient "github.com/kanal-server/kanal/surveys/client"
)

// voterCount is the size of the end-to-end survey. Voters are level-low
// accounts (e-mail code, no password, so no argon2id), signed up and
// voting concurrently through the SDKs against the real kanald.
const voterCount = 1000

// workers bounds the concurrent clients.
const workers = 24

// httpClient keeps connections to kanald alive across the many requests.
var httpClient = &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: workers * 2}}

// parallel runs f(i) for i in [0, n) on workers goroutines and fails the
// test on the first error.
func parallel(t *testing.T, n int, f func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					errs <- fmt.Errorf("%d: %w", i, err)
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// account is a signed-up account with an enrolled, logged-in device.
type account struct {
	id, device, token string
	key               ed25519.PrivateKey
	cert, ca          []byte // PEM
}

func enrol(ctx context.Context, ic *idclient.Client, email, code, password string) (*account, error) {
	v, err := ic.VerifySignup(ctx, email, code)
	if err != nil {
		return nil, err
	}
	setup := ic.WithToken(v.SetupToken)
	if password != "" {
		if err := setup.SetPassword(ctx, password, ""); err != nil {
			return nil, err
		}
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	enr, err := setup.EnrollDevice(ctx, "phone", key)
	if err != nil {
		return nil, err
	}
	s, err := ic.Login(ctx, enr.DeviceID, key, password)
	if err != nil {
		return nil, err
	}
	return &account{id: v.AccountID, device: enr.DeviceID, token: s.Token, key: key, cert: []byte(enr.Certificate), ca: []byte(enr.CA)}, nil
}

// council has the operator create and verify a council named name, with
// the account of email as its organiser.
func council(t *testing.T, op *idclient.Client, name, email string) *identity.Organisation {
	t.Helper()
	ctx := context.Background()
	org, err := op.CreateOrg(ctx, name, "council")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.VerifyOrg(ctx, org.OrgID); err != nil {
		t.Fatal(err)
	}
	if _, err := op.AddMember(ctx, org.OrgID, email, "organiser"); err != nil {
		t.Fatal(err)
	}
	return org
}

// councilOnKanald starts kanald with a council named orgName, run by an
// organiser who signs up with rat@example.org and a password (level
// substantial), and one citizen per e-mail of citizens, enrolled with a
// device key alone. It returns the server, the identity client, the
// organiser, the citizens in order and the council.
func councilOnKanald(t *testing.T, orgName string, citizens ...string) (*kanaldtest.Server, *idclient.Client, *account, []*account, *identity.Organisation) {
	t.Helper()
	ctx := context.Background()
	srv := kanaldtest.Start(t, bin.kanald)
	ic := idclient.New(srv.URL, httpClient)
	op := ic.WithToken(srv.OperatorToken(t))
	emails := append([]string{"rat@example.org"}, citizens...)
	for _, e := range emails {
		if err := ic.Signup(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	codes := srv.Codes(t)
	organiser, err := enrol(ctx, ic, emails[0], codes[emails[0]], "ein sehr gutes Passwort")
	if err != nil {
		t.Fatal(err)
	}
	var people []*account
	for _, e := range citizens {
		a, err := enrol(ctx, ic, e, codes[e], "")
		if err != nil {
			t.Fatal(err)
		}
		people = append(people, a)
	}
	return srv, ic, organiser, people, council(t, op, orgName, emails[0])
}

// defineSurvey is the organiser's side of a new anonymous survey of org:
// it creates the draft and the tally key, has define write the definition
// for them, signs it with the organiser's certificates and uploads it. It
// returns the organiser's surveys client, the draft, the tally key and the
// definition.
func defineSurvey(t *testing.T, base string, ic *idclient.Client, orgID string, organiser *account,
	define func(draft *surveys.Draft, tallyKey []byte) *surveys.Definition) (*sclient.Client, *surveys.Draft, *surveys.TallyKeyPair, *surveys.Definition) {
	t.Helper()
	return defineSurveyMode(t, base, ic, orgID, organiser, surveys.ModeAnonymous, define)
}

// defineSurveyMode is defineSurvey for a survey of the given mode.
func defineSurveyMode(t *testing.T, base string, ic *idclient.Client, orgID string, organiser *account, mode string,
	define func(draft *surveys.Draft, tallyKey []byte) *surveys.Definition) (*sclient.Client, *surveys.Draft, *surveys.TallyKeyPair, *surveys.Definition) {
	t.Helper()
	ctx := context.Background()
	dev, mem, orgCert, err := organiserCertificates(ctx, ic.WithToken(organiser.token), orgID, organiser.device)
	if err != nil {
		t.Fatal(err)
	}
	orgSurveys := sclient.New(base, httpClient).WithToken(organiser.token)
	draft, err := orgSurveys.Create(ctx, orgID, mode)
	if err != nil {
		t.Fatal(err)
	}
	tk, err := surveys.NewTallyKey()
	if err != nil {
		t.Fatal(err)
	}
	def := define(draft, tk.Public)
	signed, err := surveys.Sign(def, organiser.key, dev, mem, orgCert)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := orgSurveys.Define(ctx, draft.SurveyID, signed); err != nil {
		t.Fatal(err)
	}
	return orgSurveys, draft, tk, def
}

func voterAnswers(i int) []any {
	var text any
	if i%10 == 0 {
		text = fmt.Sprintf("Mehr Bäume %d", i%3)
	}
	return []any{i % 3, []int{i % 4, (i + 1) % 4}, []int{i % 3, (i + 1) % 3, (i + 2) % 3}, 1 + i%5, text}
}

// TestSurveyThousandVoters is the survey end to end: a council organiser
// and 1,000 citizens on the real kanald, the SDKs in process, anonymous
// ballots, the signed result equal to the intended votes, and
// 'kanal survey tally' recounting the same from the public board alone.
func TestSurveyThousandVoters(t *testing.T) {
	ctx := context.Background()
	// The thousand voters sign up from one address, in one hour.
	srv := kanaldtest.Start(t, bin.kanald, "KANAL_SIGNUP_LIMIT=1000000", "KANAL_SIGNUP_CLIENT_LIMIT=1000000")
	ic := idclient.New(srv.URL, httpClient)
	op := ic.WithToken(srv.OperatorToken(t))
	started := time.Now()

	// Everyone signs up at once; the codes arrive in the mail directory.
	const orgEmail = "organiserin@rat.musterstadt.example"
	emails := make([]string, voterCount)
	for i := range emails {
		emails[i] = fmt.Sprintf("buerger%04d@musterstadt.example", i)
	}
	if err := ic.Signup(ctx, orgEmail); err != nil {
		t.Fatal(err)
	}
	parallel(t, voterCount, func(i int) error { return ic.Signup(ctx, emails[i]) })
	codes := srv.Codes(t)
	organiser, err := enrol(ctx, ic, orgEmail, codes[orgEmail], "ein sehr gutes Passwort")
	if err != nil {
		t.Fatal(err)
	}
	voters := make([]*account, voterCount)
	parallel(t, voterCount, func(i int) error {
		a, err := enrol(ctx, ic, emails[i], codes[emails[i]], "")
		voters[i] = a
		return err
	})
	t.Logf("%d accounts signed up and logged in after %v", voterCount+1, time.Since(started))

	// The operator sets up the council with its organiser.
	org := council(t, op, "Rat der Stadt Musterstadt", orgEmail)
	dir, err := ic.DirectoryCA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, []byte(dir.Certificate), 0o644); err != nil {
		t.Fatal(err)
	}
	roots, err := (&cli{}).roots(&surveyOpts{ca: caFile}, nil)
	if err != nil {
		t.Fatal(err)
	}

	// The organiser's client makes the tally key and signs the survey.
	orgSurveys, draft, tk, def := defineSurvey(t, srv.URL, ic, org.OrgID, organiser, func(draft *surveys.Draft, tallyKey []byte) *surveys.Definition {
		now := time.Now().UTC().Truncate(time.Second)
		// The window must hold the voting below; a ballot after it is refused
		// and the test would fail, not pass wrongly.
		// It is sized from how long the sign-ups took on this machine (voting
		// costs less than signing up), within bounds.
		window := min(max(3*time.Since(started), 20*time.Second), 3*time.Minute)
		return &surveys.Definition{Version: 1, SurveyID: draft.SurveyID, OrgID: org.OrgID, Title: "Marktplatz autofrei?",
			Questions: []surveys.Question{
				{Kind: surveys.KindSingle, Prompt: "Soll der Marktplatz autofrei werden?", Options: []string{"Ja", "Nein", "Egal"}},
				{Kind: surveys.KindMultiple, Prompt: "Wie kommen Sie in die Stadt?", Options: []string{"Bus", "Rad", "Auto", "Zu Fuß"}, Min: 1, Max: 2},
				{Kind: surveys.KindRanking, Prompt: "Was zuerst?", Options: []string{"Bäume", "Bänke", "Brunnen"}},
				{Kind: surveys.KindScale, Prompt: "Wie gern sind Sie auf dem Marktplatz?"},
				{Kind: surveys.KindText, Prompt: "Was fehlt?", Max: 300, Optional: true},
			},
			Audience: surveys.Audience{Kind: surveys.AudienceLevel, Level: ca.LevelLow},
			OpensAt:  now, ClosesAt: now.Add(window), Mode: surveys.ModeAnonymous, Results: surveys.ResultsPublic,
			TokenKey: draft.TokenKey, TallyKey: tallyKey, SignedAt: now}
	})

	// Every voter: verify the definition, get a blind token with the
	// session, cast the ballot without one, keep the receipt.
	voteStart := time.Now()
	receipts := make([]*surveys.Receipt, voterCount)
	tokens := make([]*surveys.Token, voterCount)
	public := sclient.New(srv.URL, httpClient)
	parallel(t, voterCount, func(i int) error {
		withSession := public.WithToken(voters[i].token)
		d, _, err := withSession.Definition(ctx, draft.SurveyID, roots)
		if err != nil {
			return err
		}
		tok, err := withSession.Token(ctx, d)
		if err != nil {
			return err
		}
		tokens[i] = tok
		receipts[i], err = public.Cast(ctx, d, tok, voterAnswers(i))
		return err
	})
	t.Logf("%d ballots cast in %v", voterCount, time.Since(voteStart))

	// What a voter must not be able to do, through the real HTTP edge.
	v0 := public.WithToken(voters[0].token)
	if _, err := v0.Token(ctx, def); !idclient.IsProblem(err, string(surveys.TypeTokenAlreadyIssued)) {
		t.Errorf("second token: %v", err)
	}
	if _, err := public.Cast(ctx, def, tokens[0], voterAnswers(1)); !idclient.IsProblem(err, string(surveys.TypeAlreadyVoted)) {
		t.Errorf("reused token: %v", err)
	}
	forged := &surveys.Token{Message: tokens[1].Message, Signature: bytes.Clone(tokens[2].Signature)}
	forged.Message = bytes.Clone(forged.Message)
	forged.Message[3] ^= 1 // a new, unsigned token message
	if _, err := public.Cast(ctx, def, forged, voterAnswers(1)); !idclient.IsProblem(err, string(surveys.TypeBadToken)) {
		t.Errorf("forged token: %v", err)
	}
	body, _ := json.Marshal(surveys.BallotRequest{Token: tokens[3], Ciphertext: make([]byte, 1072)})
	req, _ := http.NewRequest("POST", srv.URL+"/v1/surveys/"+draft.SurveyID+"/ballots", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+voters[3].token)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("anonymous ballot with a session: status %d", resp.StatusCode)
	}

	for _, tc := range []struct {
		name, path, body string
		status           int
		typ              string
	}{
		{"malformed ballot", "/ballots", `{"token": {"message": 1}}`, http.StatusBadRequest, "urn:kanal:problem:invalid-json"},
		{"unknown field", "/ballots", `{"ciphertext": "", "vote": 1}`, http.StatusBadRequest, "urn:kanal:problem:invalid-json"},
		{"oversized ballot", "/ballots", `{"ciphertext": "` + strings.Repeat("A", 400<<10) + `"}`, http.StatusRequestEntityTooLarge, "urn:kanal:problem:too-large"},
		{"ballot without token", "/ballots", `{"ciphertext": "AAAA"}`, http.StatusBadRequest, "urn:kanal:problem:validation"},
		{"token without session", "/token", `{"blinded": "AAAA"}`, http.StatusUnauthorized, "urn:kanal:problem:invalid-token"},
		{"tally by anyone", "/tally", `{"tally_key": "AAAA"}`, http.StatusUnauthorized, "urn:kanal:problem:invalid-token"},
	} {
		resp, err := httpClient.Post(srv.URL+"/v1/surveys/"+draft.SurveyID+tc.path, "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		var p struct{ Type string }
		json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if resp.StatusCode != tc.status || p.Type != tc.typ {
			t.Errorf("%s: %d %s, want %d %s", tc.name, resp.StatusCode, p.Type, tc.status, tc.typ)
		}
	}

	// kanald's access log holds, for token requests and ballots, only
	// the fields below: no client address, no account, no device, no
	// session. What is left to correlate is time (docs/surveys.md).
	allowed := map[string]bool{"time": true, "level": true, "msg": true, "request_id": true, "method": true,
		"route": true, "path": true, "status": true, "bytes": true, "duration": true}
	logged := 0
	for _, line := range strings.Split(srv.Output(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || (rec["route"] != "POST /v1/surveys/{id}/ballots" && rec["route"] != "POST /v1/surveys/{id}/token") {
			continue
		}
		logged++
		for k := range rec {
			if !allowed[k] {
				t.Fatalf("access log of %s records %q: %s", rec["route"], k, line)
			}
		}
		if strings.Contains(line, "acc_") || strings.Contains(line, "dev_") {
			t.Fatalf("access log names an account or device: %s", line)
		}
	}
	if logged < 2*voterCount {
		t.Fatalf("only %d token and ballot requests in the access log", logged)
	}

	// After closing, the organiser publishes the tally key; kanald counts
	// and signs.
	if wait := time.Until(def.ClosesAt); wait > 0 {
		t.Logf("waiting %v for the survey to close", wait.Round(time.Second))
		time.Sleep(wait + 100*time.Millisecond)
	}
	sr, err := orgSurveys.Tally(ctx, draft.SurveyID, tk.Private, roots)
	if err != nil {
		t.Fatal(err)
	}
	st, err := surveys.VerifyResult(sr, roots)
	if err != nil {
		t.Fatal(err)
	}
	r := st.Result
	// Nothing the refused requests sent reached the board.
	if r.BoardLength != voterCount || r.Valid != voterCount || len(r.Invalid) != 0 || st.TokensIssued != voterCount {
		t.Fatalf("board %d, valid %d, invalid %d, tokens %d", r.BoardLength, r.Valid, len(r.Invalid), st.TokensIssued)
	}
	single, multiple, scale, texts := make([]int, 3), make([]int, 4), make([]int, 5), 0
	points := make([]int, 3)
	for i := range voterCount {
		a := voterAnswers(i)
		single[a[0].(int)]++
		for _, m := range a[1].([]int) {
			multiple[m]++
		}
		for place, o := range a[2].([]int) {
			points[o] += 2 - place
		}
		scale[a[3].(int)-1]++
		if a[4] != nil {
			texts++
		}
	}
	for o, n := range single {
		if got := r.Questions[0].Options[o].Count; got != n {
			t.Errorf("question 1 option %d: %d, want %d", o, got, n)
		}
	}
	for o, n := range multiple {
		if got := r.Questions[1].Options[o].Count; got != n {
			t.Errorf("question 2 option %d: %d, want %d", o, got, n)
		}
	}
	for o, n := range points {
		if got := r.Questions[2].Options[o].Points; got != n {
			t.Errorf("question 3 option %d: %d points, want %d", o, got, n)
		}
	}
	for v, n := range scale {
		if got := r.Questions[3].Options[v].Count; got != n {
			t.Errorf("question 4 value %d: %d, want %d", v+1, got, n)
		}
	}
	if len(r.Questions[4].Texts) != texts {
		t.Errorf("%d texts, want %d", len(r.Questions[4].Texts), texts)
	}

	// 'kanal survey tally' recounts from the public board alone: a
	// fresh home with no key store and no account.
	kanal := func(args ...string) (string, int) {
		cmd := exec.Command(bin.kanal, append([]string{"--server", srv.URL}, args...)...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "KANAL_HOME=" + t.TempDir()}
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	out, code := kanal("survey", "tally", draft.SurveyID, "--ca", caFile)
	if code != 0 || !strings.Contains(out, "the count agrees with the result kanald signed") ||
		!strings.Contains(out, fmt.Sprintf("%d ballots: %d valid, 0 invalid", voterCount, voterCount)) {
		t.Fatalf("kanal survey tally (exit %d):\n%s", code, out)
	}

	// Receipts: a counted ballot's is on the board, a made-up one is not.
	work := t.TempDir()
	good, _ := json.Marshal(receipts[123])
	// A fabricated receipt borrows a real one's signature.
	fake := *receipts[123]
	fake.Hash = bytes.Repeat([]byte{7}, 32)
	madeUp, _ := json.Marshal(&fake)
	os.WriteFile(filepath.Join(work, "good.json"), good, 0o600)
	os.WriteFile(filepath.Join(work, "made-up.json"), madeUp, 0o600)
	if out, code := kanal("survey", "receipt", draft.SurveyID, filepath.Join(work, "good.json"), "--ca", caFile); code != 0 {
		t.Fatalf("receipt of a counted ballot (exit %d):\n%s", code, out)
	}
	if out, code := kanal("survey", "receipt", draft.SurveyID, filepath.Join(work, "made-up.json"), "--ca", caFile); code != 1 || !strings.Contains(out, "receipt is not on the board or not signed") || strings.Contains(out, "bulletin board does not verify") {
		t.Fatalf("made-up receipt (exit %d):\n%s", code, out)
	}

	// The council's report: CSV and an SVG chart that is well-formed XML.
	csvFile, svgFile := filepath.Join(work, "result.csv"), filepath.Join(work, "result.svg")
	if out, code := kanal("survey", "result", draft.SurveyID, "--ca", caFile, "--csv", csvFile, "--svg", svgFile); code != 0 {
		t.Fatalf("kanal survey result (exit %d):\n%s", code, out)
	}
	csvData, _ := os.ReadFile(csvFile)
	if !strings.Contains(string(csvData), fmt.Sprintf("Ja,%d,", single[0])) {
		t.Errorf("csv:\n%s", csvData)
	}
	svgData, _ := os.ReadFile(svgFile)
	dec := xml.NewDecoder(bytes.NewReader(svgData))
	for {
		if _, err := dec.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("svg is not well-formed: %v", err)
		}
	}

	// The signed definition verifies offline.
	sdFile := filepath.Join(work, "survey.json")
	out, code = kanal("survey", "show", draft.SurveyID)
	if code != 0 {
		t.Fatalf("kanal survey show (exit %d):\n%s", code, out)
	}
	os.WriteFile(sdFile, []byte(out), 0o600)
	if out, code := kanal("survey", "verify", sdFile, "--ca", caFile); code != 0 || !strings.Contains(out, "organiser of \"Rat der Stadt Musterstadt\"") {
		t.Fatalf("kanal survey verify (exit %d):\n%s", code, out)
	}
	if out, code := kanal("verify", sdFile, "--ca", caFile); code != 0 || !strings.Contains(out, "Valid survey definition "+draft.SurveyID) {
		t.Fatalf("kanal verify on a survey definition (exit %d):\n%s", code, out)
	}
	tampered := strings.Replace(out, "Marktplatz autofrei?", "Marktplatz autofrei!", 1)
	os.WriteFile(sdFile, []byte(tampered), 0o600)
	if out, code := kanal("survey", "verify", sdFile, "--ca", caFile); code != 1 {
		t.Fatalf("tampered definition verified (exit %d):\n%s", code, out)
	}
}

// TestSurveyGroupAudience: a survey for the members of a group
// conversation. Group membership lives in messaging; kanald answers the
// surveys domain through an adapter, so this runs against the real kanald.
func TestSurveyGroupAudience(t *testing.T) {
	ctx := context.Background()
	srv, ic, organiser, citizens, org := councilOnKanald(t, "Ortsbeirat Nord", "anna@example.org", "ben@example.org", "cleo@example.org")

	// Anna makes a group with Ben; Cleo is not in it.
	blk, _ := pem.Decode(citizens[0].ca)
	caCert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	mc, err := mclient.New(mclient.Options{BaseURL: srv.URL, Token: citizens[0].token, AccountID: citizens[0].id, DeviceID: citizens[0].device,
		DeviceKey: citizens[0].key, DeviceCertificate: citizens[0].cert, CA: caCert, Store: mclient.NewMemoryStore()})
	if err != nil {
		t.Fatal(err)
	}
	g, err := mc.CreateGroup(ctx, messaging.GroupMemberRequest{AccountID: citizens[1].id, Role: messaging.GroupMember})
	if err != nil {
		t.Fatal(err)
	}
	ben, err := mclient.New(mclient.Options{BaseURL: srv.URL, Token: citizens[1].token, AccountID: citizens[1].id, DeviceID: citizens[1].device,
		DeviceKey: citizens[1].key, DeviceCertificate: citizens[1].cert, CA: caCert, Store: mclient.NewMemoryStore()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ben.AcceptInvitation(ctx, g.GroupID); err != nil {
		t.Fatal(err)
	}

	_, _, _, def := defineSurvey(t, srv.URL, ic, org.OrgID, organiser, func(draft *surveys.Draft, tallyKey []byte) *surveys.Definition {
		now := time.Now().UTC().Truncate(time.Second)
		return &surveys.Definition{Version: 1, SurveyID: draft.SurveyID, OrgID: org.OrgID, Title: "Straßenfest",
			Questions: []surveys.Question{{Kind: surveys.KindSingle, Prompt: "Samstag oder Sonntag?", Options: []string{"Samstag", "Sonntag"}}},
			Audience:  surveys.Audience{Kind: surveys.AudienceConversation, ConversationID: g.GroupID},
			OpensAt:   now, ClosesAt: now.Add(time.Hour), Mode: surveys.ModeAnonymous, Results: surveys.ResultsPublic,
			TokenKey: draft.TokenKey, TallyKey: tallyKey, SignedAt: now}
	})
	public := sclient.New(srv.URL, httpClient)
	for i, c := range citizens {
		withSession := public.WithToken(c.token)
		list, err := withSession.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = withSession.Token(ctx, def)
		member := i < 2
		switch {
		case member && (err != nil || len(list) != 1):
			t.Errorf("group member %d: token %v, %d surveys listed", i, err, len(list))
		case !member && (!idclient.IsProblem(err, string(surveys.TypeNotEligible)) || len(list) != 0):
			t.Errorf("non-member: token %v, %d surveys listed", err, len(list))
		}
	}

	// The board's head is in the transparency log: checked through Anna's
	// messaging SDK (its pinned log key and checkpoint). A server that
	// serves the board without head_log is refused.
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	if _, _, err := public.WithLog(mc).Board(ctx, def.SurveyID, roots); err != nil {
		t.Fatalf("board with its head_log: %v", err)
	}
	strip := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(mustURL(t, srv.URL)) },
		ModifyResponse: func(resp *http.Response) error {
			if !strings.HasSuffix(resp.Request.URL.Path, "/board") {
				return nil
			}
			var page map[string]json.RawMessage
			if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
				return err
			}
			delete(page, "head_log")
			b, _ := json.Marshal(page)
			resp.Body = io.NopCloser(bytes.NewReader(b))
			resp.ContentLength = int64(len(b))
			resp.Header.Set("Content-Length", fmt.Sprint(len(b)))
			return nil
		}})
	defer strip.Close()
	if _, _, err := sclient.New(strip.URL, httpClient).WithLog(mc).Board(ctx, def.SurveyID, roots); !errors.Is(err, surveys.ErrBadBoard) {
		t.Fatalf("board without head_log: %v, want ErrBadBoard", err)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
