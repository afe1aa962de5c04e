package main

import (
	"context"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/surveys"
	sclient "github.com/kanal-server/kanal/surveys/client"
)

// tokens: blind-token issuance for concurrent citizens. A council
// organiser (password login, level substantial) defines -surveys open
// anonymous surveys for everyone (level low); -devices citizens, all at
// once, each ask for their one token of every survey through the
// surveys SDK: blind the request, POST /v1/surveys/{id}/token with their
// session, unblind and verify the answer. The figures are tokens issued
// per second, the latency of one token (the SDK call: blinding, the
// request, unblinding and the check), and kanald's CPU per token. After
// the measured phase every survey's tokens_issued must equal the tokens
// its citizens received.
func (r *runner) tokens(ctx context.Context) error {
	defs, citizens, err := r.council(ctx)
	if err != nil {
		return err
	}

	issued := make([]atomic.Int64, len(defs))
	err = r.surveyPhase(ctx, citizens, defs,
		func(c *device) *sclient.Client { return sclient.New(c.base, c.hc).WithToken(c.token) },
		func(api *sclient.Client, i, j int) error {
			if _, err := api.Token(ctx, defs[j]); err != nil {
				return err
			}
			issued[j].Add(1)
			return nil
		})
	if err != nil {
		return err
	}

	// What the server counted must be what the citizens received.
	public := sclient.New(citizens[0].base, citizens[0].hc)
	for j, d := range defs {
		sv, err := public.Get(ctx, d.SurveyID)
		if err != nil {
			return fmt.Errorf("survey %s: %w", d.SurveyID, err)
		}
		if sv.TokensIssued != issued[j].Load() {
			r.errs.add(fmt.Sprintf("survey %s counts %d tokens issued, citizens received %d", d.SurveyID, sv.TokensIssued, issued[j].Load()))
		}
	}
	r.res.Errors = r.errs.snapshot()
	return ctx.Err()
}

// surveyPhase is the measured phase of the tokens and ballots scenarios:
// every citizen at once, each with its own client (newClient), calls
// call for every survey — citizen i starts with survey i, so that the
// surveys are asked for alike — until all are done or -duration is up.
// A call is a send; one that returns nil is delivered, its latency
// recorded.
func (r *runner) surveyPhase(ctx context.Context, citizens []*device, defs []*surveys.Definition,
	newClient func(*device) *sclient.Client, call func(api *sclient.Client, i, j int) error) error {
	stopProfile, err := r.startBenchProfile()
	if err != nil {
		return err
	}
	defer stopProfile()
	mark := r.markCPU(ctx)
	profiled := r.startCPUProfile(ctx)
	start := time.Now()
	r.rec.Store(NewRecorder(start, time.Second))
	r.expected.Store(uint64(len(citizens) * len(defs)))
	end := start.Add(r.o.duration)
	stopProgress := r.progress(r.liveLine(start))
	var wg sync.WaitGroup
	for i, c := range citizens {
		wg.Go(func() {
			api := newClient(c)
			for k := range defs {
				if time.Now().After(end) || ctx.Err() != nil {
					return
				}
				j := (i + k) % len(defs)
				t0 := time.Now()
				r.sent.Add(1)
				if err := call(api, i, j); err != nil {
					if ctx.Err() == nil {
						r.errs.add(errKind(err))
					}
					continue
				}
				now := time.Now()
				r.rec.Load().Record(now, now.Sub(t0))
				r.delivered.Add(1)
				r.deliveredAt(now)
			}
		})
	}
	wg.Wait()
	sendEnd := time.Now()
	stopProgress()
	r.endPhase(ctx, start, sendEnd, mark, profiled)
	r.res.Surveys = len(defs)
	return nil
}

// council sets up what the tokens and ballots scenarios share: a council
// whose organiser (password login, level substantial) defines -surveys
// open anonymous surveys for everyone (level low), and -devices citizens.
func (r *runner) council(ctx context.Context) ([]*surveys.Definition, []*device, error) {
	tok, err := r.operatorToken()
	if err != nil {
		return nil, nil, err
	}
	orgs, err := r.provisionOrganiser(ctx)
	if err != nil {
		return nil, nil, err
	}
	op := orgs.ident.WithToken(tok)
	org, err := op.CreateOrg(ctx, "Rat der Stadt "+r.runID, "council")
	if err != nil {
		return nil, nil, fmt.Errorf("create organisation: %w", err)
	}
	if _, err := op.VerifyOrg(ctx, org.OrgID); err != nil {
		return nil, nil, fmt.Errorf("verify organisation: %w", err)
	}
	if _, err := op.AddMember(ctx, org.OrgID, orgs.account, "organiser"); err != nil {
		return nil, nil, fmt.Errorf("add organiser: %w", err)
	}
	defs, err := r.defineSurveys(ctx, orgs, org.OrgID, r.o.surveys)
	if err != nil {
		return nil, nil, err
	}
	citizens, err := r.provision(ctx, r.o.devices, "citizen", false)
	if err != nil {
		return nil, nil, err
	}
	return defs, citizens, nil
}

// provisionOrganiser signs up the council's organiser with a password,
// so that its session and device certificate are of level substantial.
func (r *runner) provisionOrganiser(ctx context.Context) (*device, error) {
	var pw [12]byte
	if _, err := rand.Read(pw[:]); err != nil {
		return nil, err
	}
	d, err := r.newDeviceWith(ctx, "organiser", 0, false, fmt.Sprintf("bench organiser %x", pw))
	if err != nil {
		return nil, fmt.Errorf("provision organiser: %w", err)
	}
	return d, nil
}

// defineSurveys creates and signs n anonymous surveys of org, open now for
// an hour to every account, as the organiser's client would.
func (r *runner) defineSurveys(ctx context.Context, orgs *device, orgID string, n int) ([]*surveys.Definition, error) {
	dir, err := orgs.ident.DirectoryOrg(ctx, orgID)
	if err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	orgCert, err := pemDER(dir.Certificate)
	if err != nil {
		return nil, fmt.Errorf("organisation certificate: %w", err)
	}
	var mem []byte
	for _, m := range dir.Members {
		for _, md := range m.Devices {
			if md.DeviceID == orgs.id {
				if mem, err = pemDER(md.MembershipCertificate); err != nil {
					return nil, fmt.Errorf("membership certificate: %w", err)
				}
			}
		}
	}
	if mem == nil {
		return nil, errors.New("the organiser's device has no membership certificate")
	}
	dev, err := pemDER(string(orgs.cert))
	if err != nil {
		return nil, fmt.Errorf("device certificate: %w", err)
	}
	api := sclient.New(orgs.base, orgs.hc).WithToken(orgs.token)
	defs := make([]*surveys.Definition, n)
	err = parallel(ctx, n, 2, func(i int) error {
		draft, err := api.Create(ctx, orgID, surveys.ModeAnonymous)
		if err != nil {
			return fmt.Errorf("create survey: %w", err)
		}
		tk, err := surveys.NewTallyKey()
		if err != nil {
			return err
		}
		now := time.Now().UTC().Truncate(time.Second)
		d := &surveys.Definition{Version: 1, SurveyID: draft.SurveyID, OrgID: orgID, Title: fmt.Sprintf("Umfrage %d", i+1),
			Questions: []surveys.Question{{Kind: surveys.KindSingle, Prompt: "Soll der Marktplatz autofrei werden?", Options: []string{"Ja", "Nein"}}},
			Audience:  surveys.Audience{Kind: surveys.AudienceLevel, Level: ca.LevelLow},
			OpensAt:   now, ClosesAt: now.Add(time.Hour), Mode: surveys.ModeAnonymous, Results: surveys.ResultsPublic,
			TokenKey: draft.TokenKey, TallyKey: tk.Public, SignedAt: now}
		signed, err := surveys.Sign(d, orgs.key, dev, mem, orgCert)
		if err != nil {
			return err
		}
		if _, err := api.Define(ctx, draft.SurveyID, signed); err != nil {
			return fmt.Errorf("define survey: %w", err)
		}
		defs[i] = d
		return nil
	})
	if err != nil {
		return nil, err
	}
	return defs, nil
}

func pemDER(s string) ([]byte, error) {
	b, _ := pem.Decode([]byte(s))
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("want a PEM CERTIFICATE")
	}
	return b.Bytes, nil
}
