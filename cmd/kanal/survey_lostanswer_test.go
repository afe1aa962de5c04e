package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/surveys"
	sclient "github.com/kanal-server/kanal/surveys/client"
)

// answerLoserFor puts an AnswerLoser in front of base for the POSTs whose
// path ends in suffix, and returns it with a client that keeps one
// connection to it alive.
func answerLoserFor(t *testing.T, base, suffix string) (*kanaldtest.AnswerLoser, *http.Client) {
	p := kanaldtest.NewAnswerLoser(t, base, func(r *http.Request) bool {
		return r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, suffix)
	})
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxConnsPerHost: 1}}
	t.Cleanup(hc.CloseIdleConnections)
	return p, hc
}

// yesNo defines, for defineSurvey, a survey of org with one yes-or-no
// question for every account of level low, open for an hour from now.
func yesNo(orgID, title, mode string) func(draft *surveys.Draft, tallyKey []byte) *surveys.Definition {
	return func(draft *surveys.Draft, tallyKey []byte) *surveys.Definition {
		now := time.Now().UTC().Truncate(time.Second)
		return &surveys.Definition{Version: 1, SurveyID: draft.SurveyID, OrgID: orgID, Title: title,
			Questions: []surveys.Question{{Kind: surveys.KindSingle, Prompt: title + "?", Options: []string{"Ja", "Nein"}}},
			Audience:  surveys.Audience{Kind: surveys.AudienceLevel, Level: ca.LevelLow},
			OpensAt:   now, ClosesAt: now.Add(time.Hour), Mode: mode, Results: surveys.ResultsPublic,
			TokenKey: draft.TokenKey, TallyKey: tallyKey, SignedAt: now}
	}
}

// surveyNow is survey id as kanald serves it now.
func surveyNow(t *testing.T, c *sclient.Client, id string) *surveys.Survey {
	t.Helper()
	sv, err := c.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return sv
}

// TestSurveyTokenAnswerLost: the answer to a citizen's token request is
// lost because its kept-alive connection closes after kanald signed and
// recorded the issuance. The SDK's Token still succeeds — the request
// carries the hash of its blinded value as Idempotency-Key, so the HTTP
// transport sends it again and kanald signs the same request again — the
// token verifies, and the survey counts one token issued. A token request
// whose Idempotency-Key is not that hash is refused and records nothing.
func TestSurveyTokenAnswerLost(t *testing.T) {
	ctx := context.Background()
	srv, ic, organiser, citizens, org := councilOnKanald(t, "Ortsbeirat Nord", "anna@example.org")
	anna := citizens[0]
	orgSurveys, draft, _, def := defineSurvey(t, srv.URL, ic, org.OrgID, organiser, yesNo(org.OrgID, "Spielplatz", surveys.ModeAnonymous))
	issued := func() int64 { return surveyNow(t, orgSurveys, draft.SurveyID).TokensIssued }
	p, hc := answerLoserFor(t, srv.URL, "/token")
	voter := sclient.New(p.URL, hc).WithToken(anna.token)

	// A key that is not the blinded value's hash: refused, nothing issued.
	req, err := surveys.NewTokenRequest(def)
	if err != nil {
		t.Fatal(err)
	}
	other, err := surveys.NewTokenRequest(def)
	if err != nil {
		t.Fatal(err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/surveys/"+draft.SurveyID+"/token",
		strings.NewReader(`{"blinded":"`+base64.StdEncoding.EncodeToString(req.Blinded)+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Authorization", "Bearer "+anna.token)
	hreq.Header.Set(surveys.IdempotencyKeyHeader, surveys.TokenIdempotencyKey(other.Blinded))
	resp, err := httpClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a token request with another request's key: %d, want 400", resp.StatusCode)
	}
	if n := issued(); n != 0 {
		t.Fatalf("%d tokens issued after a refused request", n)
	}

	// The lost answer. A first request makes the connection a kept-alive
	// one, as a session's requests are.
	if _, err := voter.List(ctx); err != nil {
		t.Fatal(err)
	}
	p.Arm()
	tok, err := voter.Token(ctx, def)
	if err != nil {
		t.Fatalf("token after a lost answer: %v", err)
	}
	if p.Lost() != 1 {
		t.Fatalf("%d answers lost, want 1: the test did not lose one", p.Lost())
	}
	pub, err := surveys.ParseTokenKey(def.TokenKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := surveys.VerifyToken(pub, def.SurveyID, tok); err != nil {
		t.Fatalf("the token does not verify: %v", err)
	}
	if n := issued(); n != 1 {
		t.Fatalf("%d tokens issued, want 1", n)
	}
	// The issuance was recorded once, for this request: another is
	// refused as a second token.
	_, err = voter.Token(ctx, def)
	var prob *idclient.Problem
	if !errors.As(err, &prob) || prob.Type != string(surveys.TypeTokenAlreadyIssued) {
		t.Fatalf("a second token request: %v, want token-already-issued", err)
	}
}

// TestSurveyBallotAnswerLost: the answer to a ballot is lost after kanald
// put it on the board — on the new connection an anonymous ballot takes,
// and on the session's kept-alive one for a named ballot. The SDK's Cast
// and CastNamed still return a receipt that checks out, and the board
// holds the ballot once: the SDK sends the same ballot again and kanald
// answers it with the receipt of the entry it already has. A ballot
// whose Idempotency-Key is not its ciphertext's hash is refused, and a
// different ballot under the same token is still a second vote.
func TestSurveyBallotAnswerLost(t *testing.T) {
	ctx := context.Background()
	srv, ic, organiser, citizens, org := councilOnKanald(t, "Ortsbeirat Süd", "anna@example.org", "ben@example.org")
	anna, ben := citizens[0], citizens[1]
	orgSurveys, draft, _, def := defineSurvey(t, srv.URL, ic, org.OrgID, organiser, yesNo(org.OrgID, "Markthalle", surveys.ModeAnonymous))
	_, namedDraft, _, namedDef := defineSurveyMode(t, srv.URL, ic, org.OrgID, organiser, surveys.ModeNamed, yesNo(org.OrgID, "Markthalle", surveys.ModeNamed))
	blk, _ := pem.Decode(anna.ca)
	caCert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	boardLength := func(id string) int64 { return surveyNow(t, orgSurveys, id).BoardLength }
	p, hc := answerLoserFor(t, srv.URL, "ballots")

	// Anonymous: the token straight from kanald, the ballot through the
	// proxy, which loses its answer on the ballot's own new connection.
	tok, err := sclient.New(srv.URL, httpClient).WithToken(anna.token).Token(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	p.ArmAny()
	rec, err := sclient.New(p.URL, hc).Cast(ctx, def, tok, []any{0})
	if err != nil {
		t.Fatalf("ballot after a lost answer: %v", err)
	}
	if p.Lost() != 1 {
		t.Fatalf("%d answers lost, want 1: the test did not lose one", p.Lost())
	}
	public := sclient.New(srv.URL, httpClient)
	if err := public.CheckReceipt(ctx, rec, roots); err != nil {
		t.Fatalf("the receipt after a lost answer: %v", err)
	}
	if n := boardLength(draft.SurveyID); n != 1 {
		t.Fatalf("board of %d entries after one ballot, want 1", n)
	}

	// The board's entry sent again by hand: with another key refused, with
	// its own the same receipt; nothing added either way.
	entries, _, err := public.Board(ctx, draft.SurveyID, roots)
	if err != nil || len(entries) != 1 {
		t.Fatalf("board: %d entries, %v", len(entries), err)
	}
	e := entries[0]
	body, err := json.Marshal(surveys.BallotRequest{Token: &surveys.Token{Message: e.TokenMessage, Signature: e.TokenSignature}, Ciphertext: e.Ciphertext})
	if err != nil {
		t.Fatal(err)
	}
	post := func(key string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/surveys/"+draft.SurveyID+"/ballots", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(surveys.IdempotencyKeyHeader, key)
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
	if resp, _ := post(surveys.BallotIdempotencyKey(e.TokenMessage)); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a ballot with another value's key: %d, want 400", resp.StatusCode)
	}
	resp, b := post(surveys.BallotIdempotencyKey(e.Ciphertext))
	var again surveys.Receipt
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &again) != nil || again.Seq != rec.Seq || !bytes.Equal(again.Hash, rec.Hash) {
		t.Fatalf("the board's entry sent again: %d %s, want 201 with the receipt of entry %d", resp.StatusCode, b, rec.Seq)
	}
	if err := public.CheckReceipt(ctx, &again, roots); err != nil {
		t.Fatal(err)
	}
	// Another ballot under the same token is a second vote.
	_, err = sclient.New(srv.URL, httpClient).Cast(ctx, def, tok, []any{1})
	var prob *idclient.Problem
	if !errors.As(err, &prob) || prob.Type != string(surveys.TypeAlreadyVoted) {
		t.Fatalf("another ballot under a used token: %v, want already-voted", err)
	}
	if n := boardLength(draft.SurveyID); n != 1 {
		t.Fatalf("board of %d entries after the repeats, want 1", n)
	}

	// Named: the session's kept-alive connection loses the answer.
	voter := sclient.New(p.URL, hc).WithToken(ben.token)
	if _, err := voter.List(ctx); err != nil {
		t.Fatal(err)
	}
	p.Arm()
	named, err := voter.CastNamed(ctx, namedDef, ben.id, []any{1})
	if err != nil {
		t.Fatalf("named ballot after a lost answer: %v", err)
	}
	if p.Lost() != 2 {
		t.Fatalf("%d answers lost, want 2: the test did not lose the named one", p.Lost())
	}
	if err := public.CheckReceipt(ctx, named, roots); err != nil {
		t.Fatal(err)
	}
	if n := boardLength(namedDraft.SurveyID); n != 1 {
		t.Fatalf("named board of %d entries after one ballot, want 1", n)
	}
}
