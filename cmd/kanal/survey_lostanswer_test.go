package main

import (
	"context"
	"encoding/base64"
	"errors"
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
	orgSurveys, draft, _, def := defineSurvey(t, srv.URL, ic, org.OrgID, organiser, func(draft *surveys.Draft, tallyKey []byte) *surveys.Definition {
		now := time.Now().UTC().Truncate(time.Second)
		return &surveys.Definition{Version: 1, SurveyID: draft.SurveyID, OrgID: org.OrgID, Title: "Spielplatz",
			Questions: []surveys.Question{{Kind: surveys.KindSingle, Prompt: "Neu bauen?", Options: []string{"Ja", "Nein"}}},
			Audience:  surveys.Audience{Kind: surveys.AudienceLevel, Level: ca.LevelLow},
			OpensAt:   now, ClosesAt: now.Add(time.Hour), Mode: surveys.ModeAnonymous, Results: surveys.ResultsPublic,
			TokenKey: draft.TokenKey, TallyKey: tallyKey, SignedAt: now}
	})
	issued := func() int64 {
		t.Helper()
		sv, err := orgSurveys.Get(ctx, draft.SurveyID)
		if err != nil {
			t.Fatal(err)
		}
		return sv.TokensIssued
	}

	p := kanaldtest.NewAnswerLoser(t, srv.URL, func(r *http.Request) bool {
		return r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/token")
	})
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxConnsPerHost: 1}}
	defer hc.CloseIdleConnections()
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
