// Package client is the Go client of kanal's surveys: it organises a
// survey (tally key, signed definition, tally), answers one (blind token,
// encrypted ballot sent without a session, receipt) and recounts one from
// the public board alone. All cryptography happens here, on the client;
// the server sees only what package surveys says it sees.
package client

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/internal/apiclient"
	"github.com/kanal-server/kanal/keys/transparency"
	"github.com/kanal-server/kanal/surveys"
)

// Limits of the client.
const (
	// DefaultTimeout bounds one request when no http.Client is given.
	DefaultTimeout = 60 * time.Second
	// maxResponse bounds an answer (a board page of MaxBoardPage entries
	// of a few kilobytes each).
	maxResponse = 64 << 20
)

// ErrRecount is returned when a recount from the board disagrees with the
// signed result.
var ErrRecount = errors.New("surveys client: recount disagrees with the published result")

// Client talks to one kanal server's surveys API. It is safe for
// concurrent use.
type Client struct {
	base  string
	hc    *http.Client
	token string
	now   func() time.Time
	log   LogChecker // nil: board heads are not checked against the log
}

// LogChecker verifies a transparency log attachment against the log key
// and checkpoint the device pinned: messaging/client's Client.VerifyLogged
// is one (docs/transparency.md).
type LogChecker interface {
	VerifyLogged(ctx context.Context, a *transparency.Attachment) (*transparency.Entry, error)
}

// WithLog returns a copy whose Board requires, on every page, the head's
// inclusion proof in the deployment's transparency log (head_log),
// verified by l, naming the page's survey, length and head hash: a board
// the server did not log, and so might show only to this voter, is
// refused with surveys.ErrBadBoard.
func (c *Client) WithLog(l LogChecker) *Client {
	cc := *c
	cc.log = l
	return &cc
}

// New returns a client for the server at baseURL. A nil httpClient means
// one with DefaultTimeout.
func New(baseURL string, httpClient *http.Client) *Client {
	if httpClient == nil {
		httpClient = &http.Client{Timeout: DefaultTimeout}
	}
	return &Client{base: baseURL, hc: httpClient, now: time.Now}
}

// WithClock returns a copy that reads the time from now: the device's
// clock, against which Tally checks the survey's closing time.
func (c *Client) WithClock(now func() time.Time) *Client {
	cc := *c
	cc.now = now
	return &cc
}

// WithToken returns a copy that sends the session token. Anonymous
// ballots are always sent without it, whatever the client holds.
func (c *Client) WithToken(token string) *Client {
	cc := *c
	cc.token = token
	return &cc
}

// do sends one request, with the session token when withSession, and
// strictly decodes a want answer into out (a *[]byte takes it raw). Any
// other status becomes an *idclient.Problem.
func (c *Client) do(ctx context.Context, method, path string, withSession bool, in, out any, want int) error {
	return c.doHeader(ctx, method, path, withSession, nil, in, out, want)
}

// doHeader is do with the request headers of h added.
func (c *Client) doHeader(ctx context.Context, method, path string, withSession bool, h http.Header, in, out any, want int) error {
	token := ""
	if withSession {
		token = c.token
	}
	req, err := apiclient.NewRequest(ctx, method, c.base+path, in, token)
	if err != nil {
		return err
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := apiclient.Do(c.hc, req, c.base)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := apiclient.ReadCapped(resp.Body, maxResponse)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != want {
		return (*idclient.Problem)(apiclient.ProblemOf(resp, b))
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = b
		return nil
	}
	if err := apiclient.DecodeStrict(b, out); err != nil {
		return fmt.Errorf("%s %s: bad answer: %w", method, path, err)
	}
	return nil
}

func seg(id string) string { return url.PathEscape(id) }

// Create starts a draft survey for an organisation (organisers).
func (c *Client) Create(ctx context.Context, orgID, mode string) (*surveys.Draft, error) {
	var d surveys.Draft
	return &d, c.do(ctx, "POST", "/v1/surveys", true, surveys.CreateRequest{OrgID: orgID, Mode: mode}, &d, http.StatusCreated)
}

// Define uploads a signed definition; allowed until the survey opens.
func (c *Client) Define(ctx context.Context, id string, s *surveys.Signed) (*surveys.Survey, error) {
	var sv surveys.Survey
	return &sv, c.do(ctx, "PUT", "/v1/surveys/"+seg(id)+"/definition", true, s, &sv, http.StatusOK)
}

// Get returns a survey's signed definition and state (no session needed).
func (c *Client) Get(ctx context.Context, id string) (*surveys.Survey, error) {
	var sv surveys.Survey
	return &sv, c.do(ctx, "GET", "/v1/surveys/"+seg(id), false, nil, &sv, http.StatusOK)
}

// Definition fetches a survey and verifies its organiser's signature
// against the deployment CA.
func (c *Client) Definition(ctx context.Context, id string, roots *x509.CertPool) (*surveys.Definition, *surveys.Survey, error) {
	sv, err := c.Get(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	d, _, err := surveys.Verify(&sv.Signed, roots)
	if err != nil {
		return nil, nil, err
	}
	if d.SurveyID != id {
		return nil, nil, fmt.Errorf("surveys client: asked for survey %s, got %s", id, d.SurveyID)
	}
	return d, sv, nil
}

// List returns the open surveys the session's account may answer.
func (c *Client) List(ctx context.Context) ([]surveys.Summary, error) {
	var l surveys.SurveyList
	return l.Surveys, c.do(ctx, "GET", "/v1/surveys", true, nil, &l, http.StatusOK)
}

// Token obtains the session account's one eligibility token for an
// anonymous survey: blinded here, signed blind by the server, unblinded
// and checked here.
func (c *Client) Token(ctx context.Context, d *surveys.Definition) (*surveys.Token, error) {
	req, err := surveys.NewTokenRequest(d)
	if err != nil {
		return nil, err
	}
	var resp surveys.TokenResponse
	// The request is safe to repeat (the same blinded value is signed
	// again), and saying so lets the transport send it again by itself
	// when a kept-alive connection closes under it before the answer.
	key := http.Header{surveys.IdempotencyKeyHeader: {surveys.TokenIdempotencyKey(req.Blinded)}}
	if err := c.doHeader(ctx, "POST", "/v1/surveys/"+seg(d.SurveyID)+"/token", true, key, surveys.TokenRequestBody{Blinded: req.Blinded}, &resp, http.StatusOK); err != nil {
		return nil, err
	}
	return req.Finalize(resp.BlindSignature)
}

// Cast encrypts answers to the survey's tally key and casts the ballot
// with the token, without a session. Callers should wait a random while
// between Token and Cast (see docs/surveys.md).
func (c *Client) Cast(ctx context.Context, d *surveys.Definition, tok *surveys.Token, answers []any) (*surveys.Receipt, error) {
	ct, err := surveys.EncryptBallot(d, surveys.Nullifier(tok.Message), answers)
	if err != nil {
		return nil, err
	}
	// The ballot goes on a connection of its own, closed after it: a
	// kept-alive connection would carry it next to the session's token
	// request and link the two for anyone who sees connections.
	fresh := *c
	fresh.hc = freshConnections(c.hc)
	return fresh.castBallot(ctx, "/v1/surveys/"+seg(d.SurveyID)+"/ballots", false, surveys.BallotRequest{Token: tok, Ciphertext: ct})
}

// castAttempts is how often castBallot sends one ballot at most.
const castAttempts = 3

// castBallot posts a ballot with its Idempotency-Key and, when no answer
// came back (the connection failed or closed before it), posts the same
// bytes again, up to castAttempts times in all. kanald answers a ballot
// it has counted already with the receipt of its board entry, so a ballot
// whose answer was lost is neither lost nor refused as a second vote.
// An answer from kanald, a refusal included, is final.
func (c *Client) castBallot(ctx context.Context, path string, withSession bool, req surveys.BallotRequest) (*surveys.Receipt, error) {
	key := http.Header{surveys.IdempotencyKeyHeader: {surveys.BallotIdempotencyKey(req.Ciphertext)}}
	for attempt := 1; ; attempt++ {
		var rec surveys.Receipt
		err := c.doHeader(ctx, "POST", path, withSession, key, req, &rec, http.StatusCreated)
		if err == nil {
			return &rec, nil
		}
		var prob *idclient.Problem
		if errors.As(err, &prob) || attempt == castAttempts {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Duration(attempt) * 250 * time.Millisecond):
		}
	}
}

// freshConnections returns a client like hc whose transport shares no
// connection with hc's and keeps none alive: one request, one new
// connection, closed afterwards.
func freshConnections(hc *http.Client) *http.Client {
	cc := *hc
	var t *http.Transport
	switch tr := hc.Transport.(type) {
	case nil:
		t = http.DefaultTransport.(*http.Transport).Clone()
	case *http.Transport:
		t = tr.Clone()
	default:
		// An unknown round tripper (a test's, a proxy's): it decides; the
		// request still asks to close its connection.
		cc.Transport = closingTransport{tr}
		return &cc
	}
	t.DisableKeepAlives = true
	cc.Transport = t
	return &cc
}

// closingTransport marks every request "Connection: close".
type closingTransport struct{ rt http.RoundTripper }

func (ct closingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Close = true
	return ct.rt.RoundTrip(r)
}

// CastNamed casts a named ballot for account, the session's own.
func (c *Client) CastNamed(ctx context.Context, d *surveys.Definition, account string, answers []any) (*surveys.Receipt, error) {
	ct, err := surveys.EncryptBallot(d, surveys.NamedNullifier(d.SurveyID, account), answers)
	if err != nil {
		return nil, err
	}
	return c.castBallot(ctx, "/v1/surveys/"+seg(d.SurveyID)+"/named-ballots", true, surveys.BallotRequest{Ciphertext: ct})
}

// Board downloads the whole board page by page and verifies the signed
// head of the last page against roots. It does not check the entries;
// surveys.CheckBoard does.
func (c *Client) Board(ctx context.Context, id string, roots *x509.CertPool) ([]surveys.Entry, *surveys.Head, error) {
	var all []surveys.Entry
	var head *surveys.Head
	for {
		var p surveys.BoardPage
		path := "/v1/surveys/" + seg(id) + "/board?after=" + strconv.Itoa(len(all)) + "&limit=" + strconv.Itoa(surveys.MaxBoardPage)
		if err := c.do(ctx, "GET", path, false, nil, &p, http.StatusOK); err != nil {
			return nil, nil, err
		}
		h, err := surveys.VerifyHead(&p.Head, roots)
		if err != nil {
			return nil, nil, err
		}
		if err := c.checkHeadLog(ctx, id, h, p.HeadLog); err != nil {
			return nil, nil, err
		}
		head = h
		all = append(all, p.Entries...)
		if len(p.Entries) == 0 || int64(len(all)) >= head.Length {
			break
		}
	}
	// The head is read before the page: entries past it arrived later.
	if int64(len(all)) > head.Length {
		all = all[:head.Length]
	}
	return all, head, nil
}

// Tally publishes the tally private key after closing; the answer is the
// signed result. Before anything carries the key it fetches the survey,
// verifies its definition against roots, checks that the key is the
// definition's, and checks on this device's clock that the survey has
// closed: at its closes_at, or by a closing this organiser's device signed
// (Close). Otherwise it returns surveys.ErrNotClosed and the key is never
// sent.
func (c *Client) Tally(ctx context.Context, id string, tallyPriv []byte, roots *x509.CertPool) (*surveys.SignedResult, error) {
	d, sv, err := c.Definition(ctx, id, roots)
	if err != nil {
		return nil, err
	}
	if err := surveys.CheckTallyKey(d.TallyKey, tallyPriv); err != nil {
		return nil, err
	}
	if err := surveys.MayPublish(&sv.Signed, d, sv.Closing, c.now()); err != nil {
		return nil, err
	}
	// A device clock running ahead must not publish either: the server's
	// own view has to agree that the survey is closed.
	if sv.Status == surveys.StatusOpen || sv.Status == surveys.StatusScheduled {
		return nil, fmt.Errorf("%w: the server says survey %s is %s; the tally key stays on this device", surveys.ErrNotClosed, id, sv.Status)
	}
	var r surveys.SignedResult
	return &r, c.do(ctx, "POST", "/v1/surveys/"+seg(id)+"/tally", true, surveys.TallyRequest{TallyKey: tallyPriv}, &r, http.StatusOK)
}

// Close closes an open survey now, before its closes_at: key must be the
// key of the device that signed the definition. kanald records the signed
// closing and refuses ballots from then on; Tally is allowed afterwards.
func (c *Client) Close(ctx context.Context, id string, key crypto.Signer) (*surveys.Survey, error) {
	sc, err := surveys.SignClosing(id, c.now(), key)
	if err != nil {
		return nil, err
	}
	var sv surveys.Survey
	return &sv, c.do(ctx, "POST", "/v1/surveys/"+seg(id)+"/close", true, sc, &sv, http.StatusOK)
}

// Result returns the signed result (with the session, if the client has
// one, for organisation-only results).
func (c *Client) Result(ctx context.Context, id string) (*surveys.SignedResult, error) {
	var r surveys.SignedResult
	return &r, c.do(ctx, "GET", "/v1/surveys/"+seg(id)+"/result", true, nil, &r, http.StatusOK)
}

// Report downloads the result as "csv" or "svg".
func (c *Client) Report(ctx context.Context, id, format string) ([]byte, error) {
	if format != "csv" && format != "svg" {
		return nil, fmt.Errorf("surveys client: report format %q: want csv or svg", format)
	}
	var b []byte
	return b, c.do(ctx, "GET", "/v1/surveys/"+seg(id)+"/result."+format, true, nil, &b, http.StatusOK)
}

// Recount verifies a tallied survey from public data alone: the signed
// definition, the whole board against its signed head, every token and
// nullifier, and the signed result; then it decrypts every ballot with the
// published tally key, counts, and compares with the signed result. It
// returns the verified statement when the counts agree and ErrRecount when
// they do not.
func (c *Client) Recount(ctx context.Context, id string, roots *x509.CertPool) (*surveys.Statement, error) {
	d, _, err := c.Definition(ctx, id, roots)
	if err != nil {
		return nil, err
	}
	sr, err := c.Result(ctx, id)
	if err != nil {
		return nil, err
	}
	st, err := surveys.VerifyResult(sr, roots)
	if err != nil {
		return nil, err
	}
	entries, head, err := c.Board(ctx, id, roots)
	if err != nil {
		return nil, err
	}
	if head.Length != st.Result.BoardLength {
		return nil, fmt.Errorf("%w: the result counts %d entries, the board has %d", ErrRecount, st.Result.BoardLength, head.Length)
	}
	if err := surveys.CheckBoard(d, entries, head); err != nil {
		return nil, err
	}
	mine, err := surveys.Tally(d, st.TallyKey, entries)
	if err != nil {
		return nil, err
	}
	a, _ := json.Marshal(mine)
	b, _ := json.Marshal(&st.Result)
	if !bytes.Equal(a, b) {
		return nil, fmt.Errorf("%w:\nrecounted: %s\npublished: %s", ErrRecount, a, b)
	}
	return st, nil
}

// CheckReceipt verifies the receipt's notary signature, the board, and
// that the board holds the receipt's ballot. A receipt the board does not
// hold, or one not signed by the notary, is surveys.ErrBadReceipt.
func (c *Client) CheckReceipt(ctx context.Context, r *surveys.Receipt, roots *x509.CertPool) error {
	if err := surveys.VerifyReceipt(r, roots); err != nil {
		return err
	}
	d, _, err := c.Definition(ctx, r.SurveyID, roots)
	if err != nil {
		return err
	}
	entries, head, err := c.Board(ctx, r.SurveyID, roots)
	if err != nil {
		return err
	}
	if err := surveys.CheckBoard(d, entries, head); err != nil {
		return err
	}
	return surveys.FindReceipt(entries, r)
}

// checkHeadLog checks, when the client has a LogChecker, that a is the
// verified survey-head entry of head.
func (c *Client) checkHeadLog(ctx context.Context, id string, head *surveys.Head, a *transparency.Attachment) error {
	if c.log == nil {
		return nil
	}
	if a == nil {
		return fmt.Errorf("%w: the board head is not in the transparency log (no head_log)", surveys.ErrBadBoard)
	}
	e, err := c.log.VerifyLogged(ctx, a)
	if err != nil {
		return fmt.Errorf("%w: head_log: %w", surveys.ErrBadBoard, err)
	}
	if e.Kind != transparency.KindSurveyHead || e.Survey != id || head.SurveyID != id || e.Size != uint64(head.Length) || !bytes.Equal(e.Head, head.Hash) {
		return fmt.Errorf("%w: head_log names %s %s of length %d, not this board's head", surveys.ErrBadBoard, e.Kind, e.Survey, e.Size)
	}
	return nil
}
