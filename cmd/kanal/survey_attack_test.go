package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/surveys"
	sclient "github.com/kanal-server/kanal/surveys/client"
)

// recorder is a reverse proxy in front of the real kanald that keeps every
// request it forwards: what the server was sent.
type recorder struct {
	mu    sync.Mutex
	reqs  []string // "METHOD path\nbody"
	conns []string // the client address of each request
	close []bool   // whether each request asked to close its connection
}

func (rec *recorder) start(t *testing.T, target string) string {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, r.Method+" "+r.URL.Path+"\n"+string(b))
		rec.conns = append(rec.conns, r.RemoteAddr)
		rec.close = append(rec.close, r.Close)
		rec.mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	return ts.URL
}

// last returns the index of the last request whose first line starts
// with prefix, or -1.
func (rec *recorder) last(prefix string) int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for i := len(rec.reqs) - 1; i >= 0; i-- {
		if strings.HasPrefix(rec.reqs[i], prefix) {
			return i
		}
	}
	return -1
}

// saw reports the requests that contain s.
func (rec *recorder) saw(s string) []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []string
	for _, r := range rec.reqs {
		if strings.Contains(r, s) {
			out = append(out, r)
		}
	}
	return out
}

// TestSurveyTallyKeyStaysOnDeviceBeforeClosing: the adversary is whoever
// sees the server's side (kanald, its operator, a proxy): it must never
// receive an open survey's tally key, with which every ballot on the
// public board decrypts. The organiser's SDK refuses to publish before
// closes_at and makes no request carrying the key; closing early takes a
// closing signed by the definition's device (a closing signed by any other
// key is refused and changes nothing); after it ballots are refused and the
// key may go.
func TestSurveyTallyKeyStaysOnDeviceBeforeClosing(t *testing.T) {
	ctx := context.Background()
	srv, ic, organiser, citizens, org := councilOnKanald(t, "Ortsbeirat Süd", "anna@example.org")
	anna := citizens[0]
	dir, err := ic.DirectoryCA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode([]byte(dir.Certificate))
	caCert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)

	rec := &recorder{}
	base := rec.start(t, srv.URL)
	orgSurveys, draft, tk, def := defineSurvey(t, base, ic, org.OrgID, organiser, func(draft *surveys.Draft, tallyKey []byte) *surveys.Definition {
		now := time.Now().UTC().Truncate(time.Second)
		return &surveys.Definition{Version: 1, SurveyID: draft.SurveyID, OrgID: org.OrgID, Title: "Bushaltestelle",
			Questions: []surveys.Question{{Kind: surveys.KindSingle, Prompt: "Verlegen?", Options: []string{"Ja", "Nein"}}},
			Audience:  surveys.Audience{Kind: surveys.AudienceLevel, Level: ca.LevelLow},
			OpensAt:   now, ClosesAt: now.Add(time.Hour), Mode: surveys.ModeAnonymous, Results: surveys.ResultsPublic,
			TokenKey: draft.TokenKey, TallyKey: tallyKey, SignedAt: now}
	})
	keyB64 := base64.StdEncoding.EncodeToString(tk.Private)
	id := draft.SurveyID

	// Anna votes while the survey is open.
	voter := sclient.New(base, httpClient)
	tok, err := voter.WithToken(anna.token).Token(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := voter.Cast(ctx, def, tok, []any{1}); err != nil {
		t.Fatal(err)
	}
	// Unlinkability: the SDK's client keeps connections alive, yet the
	// ballot arrives on a connection of its own that it asks to close —
	// not on the one that carried the session's token request.
	ti, bi := rec.last("POST /v1/surveys/"+draft.SurveyID+"/token"), rec.last("POST /v1/surveys/"+draft.SurveyID+"/ballots")
	if ti < 0 || bi < 0 {
		t.Fatal("token request or ballot not seen")
	}
	if rec.conns[ti] == rec.conns[bi] || !rec.close[bi] {
		t.Fatalf("the ballot came on the token request's connection (%s, %s) or kept it alive (close %v)", rec.conns[ti], rec.conns[bi], rec.close[bi])
	}

	// Publishing while open: refused on the device, nothing sent.
	before := len(rec.saw(""))
	if _, err := orgSurveys.Tally(ctx, id, tk.Private, roots); !errors.Is(err, surveys.ErrNotClosed) {
		t.Fatalf("tally of an open survey: %v, want ErrNotClosed", err)
	}
	// The device's clock decides, a second before closes_at too.
	if _, err := orgSurveys.WithClock(func() time.Time { return def.ClosesAt.Add(-time.Second) }).Tally(ctx, id, tk.Private, roots); !errors.Is(err, surveys.ErrNotClosed) {
		t.Fatalf("tally a second before closing: %v", err)
	}
	// A device clock running an hour ahead: the server still says open.
	if _, err := orgSurveys.WithClock(func() time.Time { return def.ClosesAt.Add(time.Hour) }).Tally(ctx, id, tk.Private, roots); !errors.Is(err, surveys.ErrNotClosed) {
		t.Fatalf("tally with a clock running ahead: %v", err)
	}
	if got := rec.saw(keyB64); len(got) != 0 {
		t.Fatalf("the server was sent the tally key of an open survey: %q", got[0])
	}
	if got := rec.saw("/tally"); len(got) != 0 {
		t.Fatalf("a tally request reached the server: %q", got[0])
	}
	for _, r := range rec.saw("")[before:] {
		if !strings.HasPrefix(r, "GET ") {
			t.Fatalf("publishing an open survey sent %q", r)
		}
	}

	// A closing signed by another key (the adversary holds the organiser's
	// session, not its device key) is refused and changes nothing.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := orgSurveys.Close(ctx, id, other); !idclient.IsProblem(err, string(surveys.TypeBadDefinitionSignature)) {
		t.Fatalf("closing signed by another key: %v", err)
	}
	sv, err := orgSurveys.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if sv.Status != surveys.StatusOpen || sv.Closing != nil {
		t.Fatalf("after a forged closing the survey is %s, closing %v", sv.Status, sv.Closing != nil)
	}
	// A citizen cannot close it either.
	_, err = voter.WithToken(anna.token).Close(ctx, id, anna.key)
	if st := idclient.StatusOf(err); st != http.StatusForbidden && st != http.StatusUnauthorized {
		t.Fatalf("closing by a citizen: %v", err)
	}
	if sv, err := orgSurveys.Get(ctx, id); err != nil || sv.Status != surveys.StatusOpen {
		t.Fatalf("after a citizen's closing: %v %v", sv, err)
	}

	// The organiser's device closes early; the board records the closing.
	sv, err = orgSurveys.Close(ctx, id, organiser.key)
	if err != nil {
		t.Fatal(err)
	}
	if sv.Status != surveys.StatusClosed || sv.Closing == nil {
		t.Fatalf("after closing: status %s, closing %v", sv.Status, sv.Closing != nil)
	}
	if _, err := surveys.VerifyClosing(&sv.Signed, def, sv.Closing); err != nil {
		t.Fatal(err)
	}
	entries, _, err := voter.Board(ctx, id, roots)
	if err != nil || len(entries) != 1 {
		t.Fatalf("board after closing: %d entries, %v", len(entries), err)
	}
	if _, err := orgSurveys.Close(ctx, id, organiser.key); !idclient.IsProblem(err, string(surveys.TypeSurveyNotOpen)) {
		t.Fatalf("second closing: %v", err)
	}
	// No ballot after the closing.
	if _, err := voter.Cast(ctx, def, tok, []any{0}); !idclient.IsProblem(err, string(surveys.TypeSurveyNotOpen)) &&
		!idclient.IsProblem(err, string(surveys.TypeAlreadyVoted)) {
		t.Fatalf("ballot after closing: %v", err)
	}
	// Now the key may go, and the recount agrees.
	if _, err := orgSurveys.Tally(ctx, id, tk.Private, roots); err != nil {
		t.Fatal(err)
	}
	st, err := voter.Recount(ctx, id, roots)
	if err != nil {
		t.Fatal(err)
	}
	if st.Result.Valid != 1 {
		t.Fatalf("recount: %d valid ballots", st.Result.Valid)
	}
}
