package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/identity/keystore"
	mclient "github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/surveys"
	sclient "github.com/kanal-server/kanal/surveys/client"
)

// Names of survey state in the key store: the organiser's tally private
// keys and a voter's receipts.
const (
	secretTallyKey = "kanal.survey.tally_key."
	secretReceipt  = "kanal.survey.receipt."
	secretToken    = "kanal.survey.token."
)

// surveyOpts are the survey commands' own flags.
type surveyOpts struct {
	org, mode, answers, ca, csv, svg string
	delay                            time.Duration
}

// DefaultBallotDelay bounds the random wait between the token request and
// the anonymous ballot when --delay is not given (docs/surveys.md).
const DefaultBallotDelay = 10 * time.Minute

func surveyCommands() []*command {
	so := &surveyOpts{}
	caFlag := func(fs *flag.FlagSet) {
		fs.StringVar(&so.ca, "ca", "", "deployment CA certificate `FILE` to trust: the root, then any issuing intermediates (default: the key store's)")
	}
	return []*command{
		{name: "survey create", args: "--org ORG [--mode anonymous|named] FILE", nargs: 1,
			summary: "create, sign and upload a survey (organisers)",
			help: `FILE is a JSON survey: title, description, questions, audience, opens_at
(default now), closes_at and results. kanal fills in the survey id, the
organisation, the mode and the keys, makes the tally key pair (the private
key stays in this key store until 'kanal survey publish'), signs the
definition with this device's key and uploads it. Example:

  {"title": "Marktplatz", "closes_at": "2026-12-01T18:00:00Z", "results": "public",
   "audience": {"kind": "level", "level": "low"},
   "questions": [{"kind": "single", "prompt": "Autofrei?", "options": ["Ja", "Nein"]}]}`,
			flags: func(fs *flag.FlagSet, _ *opts) {
				fs.StringVar(&so.org, "org", "", "the council's organisation `ID`")
				fs.StringVar(&so.mode, "mode", surveys.ModeAnonymous, "anonymous or named")
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return surveyCreate(ctx, c, o, so, args)
			}},
		{name: "survey edit", args: "ID FILE", nargs: 2, summary: "replace a survey's definition before it opens (organisers)",
			help: `FILE is a JSON survey as for 'kanal survey create'. The survey keeps its id,
organisation, mode and keys; the new definition is signed and uploaded.
Once the survey has opened, kanald refuses every change.`,
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return surveyEdit(ctx, c, o, so, args[0], args[1])
			}},
		{name: "survey invite", args: "ID ACCOUNT|GROUP...", nargs: -1, summary: "invite accounts or a group to a survey through the chat (organisers)",
			help: `Sends a survey.invite message end to end: to an account (acc_…) in the
council's conversation with that citizen, so it arrives from the council;
to a group (g_…) in the group. The receiving client fetches the survey and
checks the organiser's signature before showing it.`,
			flags: func(fs *flag.FlagSet, _ *opts) { caFlag(fs) },
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return surveyInvite(ctx, c, o, so, args)
			}},
		{name: "survey list", nargs: 0, summary: "list the open surveys you may answer",
			run: func(ctx context.Context, c *cli, o *opts, _ []string) error { return surveyList(ctx, c, o) }},
		{name: "survey show", args: "ID", nargs: 1, summary: "print a survey's signed definition (for 'kanal survey verify')",
			run: func(ctx context.Context, c *cli, o *opts, args []string) error { return surveyShow(ctx, c, o, args[0]) }},
		{name: "survey verify", args: "FILE --ca ca.pem", nargs: 1, summary: "verify a signed survey definition offline",
			help:  `Checks the organiser's signature, device and membership certificates up to the deployment CA, without asking any server.`,
			flags: func(fs *flag.FlagSet, _ *opts) { caFlag(fs) },
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return surveyVerifyFile(c, so, args[0])
			}},
		{name: "survey vote", args: "ID --answers JSON", nargs: 1, summary: "answer a survey",
			help: `--answers is a JSON list with one answer per question: a number for single
choice and scale (1..5) questions, a list of option numbers (from 0) for
multiple choice and ranking, a string for text, null to skip an optional
question. For an anonymous survey kanal fetches a blind token with your
session, waits (--delay: a random time up to the given duration, 10
minutes unless you say otherwise, so that the server cannot pair the two
requests by time; --delay 0 does not wait), and casts the encrypted ballot
without a session on a new connection that is closed after it. The receipt
is kept in the key store; if the wait is interrupted, voting again reuses
the stored token.`,
			flags: func(fs *flag.FlagSet, _ *opts) {
				fs.StringVar(&so.answers, "answers", "", "the answers as a JSON `list`")
				fs.DurationVar(&so.delay, "delay", DefaultBallotDelay, "wait a random time up to `DURATION` between token and ballot")
				caFlag(fs)
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return surveyVote(ctx, c, o, so, args[0])
			}},
		{name: "survey receipt", args: "ID [RECEIPT-FILE]", nargs: -1, summary: "check that your ballot is on the survey's board",
			flags: func(fs *flag.FlagSet, _ *opts) { caFlag(fs) },
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return surveyReceipt(ctx, c, o, so, args)
			}},
		{name: "survey close", args: "ID", nargs: 1, summary: "close an open survey now, before its closing time (organisers; the device that signed it)",
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return surveyClose(ctx, c, o, args[0])
			}},
		{name: "survey publish", args: "ID", nargs: 1, summary: "after closing, publish the tally key; kanald counts and signs (organisers)",
			flags: func(fs *flag.FlagSet, _ *opts) { caFlag(fs) },
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return surveyPublish(ctx, c, o, so, args[0])
			}},
		{name: "survey tally", args: "ID [--ca ca.pem]", nargs: 1, summary: "recount a survey from its public board and compare with the signed result",
			flags: func(fs *flag.FlagSet, _ *opts) { caFlag(fs) },
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return surveyTally(ctx, c, o, so, args[0])
			}},
		{name: "survey result", args: "ID [--csv FILE] [--svg FILE]", nargs: 1, summary: "show a survey's result; save it as CSV or an SVG chart",
			flags: func(fs *flag.FlagSet, _ *opts) {
				fs.StringVar(&so.csv, "csv", "", "write the result as CSV to `FILE`")
				fs.StringVar(&so.svg, "svg", "", "write a bar chart as SVG to `FILE`")
				caFlag(fs)
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return surveyResult(ctx, c, o, so, args[0])
			}},
	}
}

// surveyAPI returns a surveys client, with this device's session when
// the key store is logged in.
func (c *cli) surveyAPI(ctx context.Context, o *opts, st *keystore.Store) (*sclient.Client, error) {
	api := sclient.New(c.serverURL(o, st), nil)
	if st == nil || st.Data.SessionToken == "" {
		return api, nil
	}
	if _, err := c.session(ctx, o, st); err != nil {
		return nil, err
	}
	return api.WithToken(st.Data.SessionToken), nil
}

// surveyClient returns the surveys client and the deployment CA to check
// what it fetches against.
func (c *cli) surveyClient(ctx context.Context, o *opts, so *surveyOpts, st *keystore.Store) (*sclient.Client, *x509.CertPool, error) {
	roots, err := c.roots(so, st)
	if err != nil {
		return nil, nil, err
	}
	api, err := c.surveyAPI(ctx, o, st)
	if err != nil {
		return nil, nil, err
	}
	return api, roots, nil
}

// roots is the deployment CA to trust: --ca, else the key store's. A
// --ca file holds the root first and, for a deployment whose root is kept
// offline, its issuing intermediates after it; the key store keeps them
// from enrolment. Each intermediate must be one the root issued
// (ca.TrustPool), or nothing is trusted.
func (c *cli) roots(so *surveyOpts, st *keystore.Store) (*x509.CertPool, error) {
	var certs []*x509.Certificate
	switch {
	case so.ca != "":
		b, err := os.ReadFile(so.ca)
		if err != nil {
			return nil, err
		}
		if certs, err = ca.ParseCertificatesPEM(b); err != nil {
			return nil, fmt.Errorf("CA certificate: %w", err)
		}
	case st != nil && getSecret(st, secretCA) != "":
		root, err := caCert(st)
		if err != nil {
			return nil, fmt.Errorf("CA certificate: %w", err)
		}
		certs = append([]*x509.Certificate{root}, storedIntermediates(st)...)
	default:
		return nil, errors.New("no CA to trust: pass --ca ca.pem ('kanal directory ca > ca.pem')")
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("CA certificate: no certificate in %s", so.ca)
	}
	p, err := ca.TrustPool(certs[0], certs[1:])
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	return p, nil
}

// optionalStore opens the key store if there is one: recounting and
// verifying need no account.
func (c *cli) optionalStore() *keystore.Store {
	home, err := c.home()
	if err != nil {
		return nil
	}
	if _, err := os.Stat(home + "/" + storeFile); err != nil {
		return nil
	}
	st, err := c.openStore(false)
	if err != nil {
		return nil
	}
	return st
}

func surveyCreate(ctx context.Context, c *cli, o *opts, so *surveyOpts, args []string) error {
	if so.org == "" {
		return &usageError{cmd: "survey create", msg: "--org is required"}
	}
	def, err := c.readSurveyFile(args[0])
	if err != nil {
		return err
	}
	// Check the whole file before kanald makes a draft (and its token
	// key): a bad file must leave nothing on the server.
	now := c.now().UTC().Truncate(time.Second)
	def.Version, def.OrgID, def.Mode = 1, so.org, so.mode
	if def.OpensAt.IsZero() {
		def.OpensAt = now
	}
	if !def.ClosesAt.After(now) {
		return fmt.Errorf("%s: closes_at %s is in the past", args[0], def.ClosesAt.UTC().Format(time.RFC3339))
	}
	if err := def.ValidateDraft(); err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	st, err := c.openStore(false)
	if err != nil {
		return err
	}
	if st.Data.DeviceKey == nil {
		return errors.New("this key store has no enrolled device: run 'kanal device enroll'")
	}
	ids, err := c.session(ctx, o, st)
	if err != nil {
		return err
	}
	dev, mem, org, err := organiserCertificates(ctx, ids, so.org, st.Data.DeviceID)
	if err != nil {
		return err
	}
	api, err := c.surveyAPI(ctx, o, st)
	if err != nil {
		return err
	}
	draft, err := api.Create(ctx, so.org, so.mode)
	if err != nil {
		return err
	}
	tk, err := surveys.NewTallyKey()
	if err != nil {
		return err
	}
	def.SurveyID, def.TokenKey, def.TallyKey, def.SignedAt = draft.SurveyID, draft.TokenKey, tk.Public, now
	signed, err := surveys.Sign(def, st.Data.DeviceKey, dev, mem, org)
	if err != nil {
		return err
	}
	// Keep the tally key before the survey exists for anyone else: a lost
	// key would make the survey uncountable.
	setSecret(st, secretTallyKey+draft.SurveyID, string(pemEncode("KANAL SURVEY TALLY KEY", tk.Private)))
	if err := st.Save(); err != nil {
		return err
	}
	if _, err := api.Define(ctx, draft.SurveyID, signed); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Survey %s created (%s), open %s to %s.\nThe tally key is in this key store; publish it after closing with 'kanal survey publish %s'.\n",
		draft.SurveyID, def.Mode, def.OpensAt.Local().Format(time.DateTime), def.ClosesAt.Local().Format(time.DateTime), draft.SurveyID)
	return nil
}

func pemEncode(typ string, b []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b})
}

// organiserCertificates finds this device's certificate and membership
// of org, and the organisation's certificate, in the public directory.
func organiserCertificates(ctx context.Context, ids *idclient.Client, orgID, deviceID string) (dev, mem, org []byte, err error) {
	d, err := ids.DirectoryOrg(ctx, orgID)
	if err != nil {
		return nil, nil, nil, err
	}
	if org, err = pemBlock([]byte(d.Certificate), "CERTIFICATE"); err != nil {
		return nil, nil, nil, fmt.Errorf("organisation %s is not verified", orgID)
	}
	for _, m := range d.Members {
		for _, md := range m.Devices {
			if md.DeviceID != deviceID {
				continue
			}
			if dev, err = pemBlock([]byte(md.Certificate), "CERTIFICATE"); err != nil {
				return nil, nil, nil, err
			}
			if mem, err = pemBlock([]byte(md.MembershipCertificate), "CERTIFICATE"); err != nil {
				return nil, nil, nil, err
			}
			return dev, mem, org, nil
		}
	}
	return nil, nil, nil, fmt.Errorf("this device has no membership of %s: ask its admin to add you as organiser", orgID)
}

func surveyList(ctx context.Context, c *cli, o *opts) error {
	st, err := c.openStore(false)
	if err != nil {
		return err
	}
	api, err := c.surveyAPI(ctx, o, st)
	if err != nil {
		return err
	}
	l, err := api.List(ctx)
	if err != nil {
		return err
	}
	if len(l) == 0 {
		fmt.Fprintln(c.stdout, "No open surveys for you.")
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SURVEY\tORGANISATION\tMODE\tCLOSES\tTITLE")
	for _, s := range l {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.SurveyID, s.OrgID, s.Mode, s.ClosesAt.Local().Format(time.DateTime), oneLine(s.Title))
	}
	return tw.Flush()
}

func surveyShow(ctx context.Context, c *cli, o *opts, id string) error {
	api := sclient.New(c.serverURL(o, c.optionalStore()), nil)
	sv, err := api.Get(ctx, id)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(sv.Signed, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "%s\n", b)
	return err
}

// surveyVerifyFile verifies a signed definition offline.
func surveyVerifyFile(c *cli, so *surveyOpts, file string) error {
	raw, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if len(raw) > 2*surveys.MaxDefinition {
		return fmt.Errorf("%s: larger than a signed survey definition can be", file)
	}
	var s surveys.Signed
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("%s: not a signed survey definition: %w", file, err)
	}
	return verifySignedSurvey(c, so, &s)
}

func verifySignedSurvey(c *cli, so *surveyOpts, s *surveys.Signed) error {
	roots, err := c.roots(so, nil)
	if err != nil {
		return err
	}
	d, signer, err := surveys.Verify(s, roots)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Valid survey definition %s: %q, %s, %d questions, open %s to %s.\nSigned by account %s (device %s), %s of %q (%s), at %s.\n",
		d.SurveyID, d.Title, d.Mode, len(d.Questions), d.OpensAt.UTC().Format(time.RFC3339), d.ClosesAt.UTC().Format(time.RFC3339),
		signer.AccountID, signer.DeviceID, signer.Role, signer.OrgName, signer.OrgID, d.SignedAt.UTC().Format(time.RFC3339))
	return nil
}

func surveyVote(ctx context.Context, c *cli, o *opts, so *surveyOpts, id string) error {
	if so.answers == "" {
		return &usageError{cmd: "survey vote", msg: "--answers is required"}
	}
	var answers []any
	dec := json.NewDecoder(strings.NewReader(so.answers))
	dec.UseNumber()
	if err := dec.Decode(&answers); err != nil {
		return fmt.Errorf("--answers: want a JSON list: %w", err)
	}
	for i, a := range answers {
		answers[i] = plainNumbers(a)
	}
	st, err := c.openStore(false)
	if err != nil {
		return err
	}
	api, roots, err := c.surveyClient(ctx, o, so, st)
	if err != nil {
		return err
	}
	d, _, err := api.Definition(ctx, id, roots)
	if err != nil {
		return err
	}
	// A mistake in the answers must not cost the one token.
	if err := surveys.CheckAnswers(d, answers); err != nil {
		return err
	}
	var rec *surveys.Receipt
	if d.Mode == surveys.ModeNamed {
		rec, err = api.CastNamed(ctx, d, st.Data.AccountID, answers)
	} else {
		// The token is kept until the ballot is counted, so that a failed
		// cast (a lost connection) can be retried with it.
		var tok *surveys.Token
		if raw := getSecret(st, secretToken+id); raw != "" {
			tok = &surveys.Token{}
			if err := json.Unmarshal([]byte(raw), tok); err != nil {
				return fmt.Errorf("stored token: %w", err)
			}
		} else {
			if tok, err = api.Token(ctx, d); err != nil {
				return err
			}
			b, _ := json.Marshal(tok)
			setSecret(st, secretToken+id, string(b))
			if err := st.Save(); err != nil {
				return err
			}
		}
		if so.delay > 0 {
			n, rerr := rand.Int(rand.Reader, big.NewInt(int64(so.delay)))
			if rerr != nil {
				return rerr
			}
			fmt.Fprintf(c.stderr, "Token received; casting the ballot in %v (--delay %v), on a new connection.\n",
				time.Duration(n.Int64()).Round(time.Second), so.delay)
			select {
			case <-time.After(time.Duration(n.Int64())):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		rec, err = api.Cast(ctx, d, tok, answers)
	}
	if err != nil {
		return err
	}
	b, _ := json.Marshal(rec)
	setSecret(st, secretToken+id, "")
	setSecret(st, secretReceipt+id, string(b))
	if err := st.Save(); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Ballot counted as entry %d of survey %s.\nReceipt: %s\n", rec.Seq, id, b)
	return nil
}

// plainNumbers turns json.Numbers into ints so answers encode as numbers.
func plainNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		return x
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = plainNumbers(x[i])
		}
		return out
	}
	return v
}

func surveyReceipt(ctx context.Context, c *cli, o *opts, so *surveyOpts, args []string) error {
	if len(args) < 1 || len(args) > 2 {
		return &usageError{cmd: "survey receipt", msg: "usage: kanal survey receipt ID [RECEIPT-FILE]"}
	}
	id := args[0]
	st := c.optionalStore()
	var raw []byte
	if len(args) == 2 {
		b, err := c.readInput(args[1])
		if err != nil {
			return err
		}
		raw = b
	} else if st != nil && getSecret(st, secretReceipt+id) != "" {
		raw = []byte(getSecret(st, secretReceipt+id))
	} else {
		return fmt.Errorf("no receipt for survey %s in the key store; pass the receipt file", id)
	}
	var rec surveys.Receipt
	if err := json.Unmarshal(raw, &rec); err != nil {
		return fmt.Errorf("not a receipt: %w", err)
	}
	if rec.SurveyID != id {
		return fmt.Errorf("the receipt is for survey %s", rec.SurveyID)
	}
	roots, err := c.roots(so, st)
	if err != nil {
		return err
	}
	if err := sclient.New(c.serverURL(o, st), nil).CheckReceipt(ctx, &rec, roots); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Your ballot is entry %d on the board of survey %s: the receipt is signed by the deployment's notary (%s), and the board's chain and signed head verify.\n",
		rec.Seq, id, rec.At.UTC().Format(time.RFC3339))
	return nil
}

func surveyPublish(ctx context.Context, c *cli, o *opts, so *surveyOpts, id string) error {
	st, err := c.openStore(false)
	if err != nil {
		return err
	}
	keyPEM := getSecret(st, secretTallyKey+id)
	if keyPEM == "" {
		return fmt.Errorf("this key store has no tally key for survey %s", id)
	}
	key, err := pemBlock([]byte(keyPEM), "KANAL SURVEY TALLY KEY")
	if err != nil {
		return err
	}
	// The SDK checks the signed definition's closes_at (or this device's
	// recorded early closing) on this device's clock before the key goes
	// anywhere: an open survey's ballots would decrypt with it.
	api, roots, err := c.surveyClient(ctx, o, so, st)
	if err != nil {
		return err
	}
	if _, err := api.WithClock(c.now).Tally(ctx, id, key, roots); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Tally key of survey %s published; kanald has counted and signed the result.\nAnyone can recount it: kanal survey tally %s --ca ca.pem\n", id, id)
	return nil
}

// surveyClose signs "closed now" with this device's key (the one that
// signed the definition) and has kanald record it.
func surveyClose(ctx context.Context, c *cli, o *opts, id string) error {
	st, err := c.openStore(false)
	if err != nil {
		return err
	}
	if st.Data.DeviceKey == nil {
		return errors.New("this key store has no enrolled device: run 'kanal device enroll'")
	}
	api, err := c.surveyAPI(ctx, o, st)
	if err != nil {
		return err
	}
	sv, err := api.WithClock(c.now).Close(ctx, id, st.Data.DeviceKey)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Survey %s closed early (%d ballots on the board); publish the tally key with 'kanal survey publish %s'.\n", id, sv.BoardLength, id)
	return nil
}

func surveyTally(ctx context.Context, c *cli, o *opts, so *surveyOpts, id string) error {
	st := c.optionalStore()
	api, roots, err := c.surveyClient(ctx, o, so, st)
	if err != nil {
		return err
	}
	stmt, err := api.Recount(ctx, id, roots)
	if err != nil {
		return err
	}
	printResult(c, stmt)
	fmt.Fprintf(c.stdout, "Recounted %d ballots from the public board: the count agrees with the result kanald signed.\n", stmt.Result.BoardLength)
	return nil
}

func surveyResult(ctx context.Context, c *cli, o *opts, so *surveyOpts, id string) error {
	st := c.optionalStore()
	api, roots, err := c.surveyClient(ctx, o, so, st)
	if err != nil {
		return err
	}
	sr, err := api.Result(ctx, id)
	if err != nil {
		return err
	}
	stmt, err := surveys.VerifyResult(sr, roots)
	if err != nil {
		return err
	}
	printResult(c, stmt)
	for _, out := range []struct {
		file  string
		write func(*os.File) error
	}{
		{so.csv, func(f *os.File) error { return surveys.WriteCSV(f, stmt) }},
		{so.svg, func(f *os.File) error { return surveys.WriteSVG(f, stmt) }},
	} {
		if out.file == "" {
			continue
		}
		f, err := os.Create(out.file)
		if err != nil {
			return err
		}
		if err := out.write(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}

func printResult(c *cli, s *surveys.Statement) {
	r := &s.Result
	fmt.Fprintf(c.stdout, "%s (%s)\n%d ballots: %d valid, %d invalid; participation %.1f%% of %d tokens issued.\n",
		r.Title, r.SurveyID, r.BoardLength, r.Valid, len(r.Invalid), s.Participation, s.TokensIssued)
	for _, inv := range r.Invalid {
		fmt.Fprintf(c.stdout, "  invalid: entry %d: %s\n", inv.Seq, inv.Reason)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	for i, q := range r.Questions {
		fmt.Fprintf(tw, "%d. %s\t(%d answered, %d skipped)\n", i+1, oneLine(q.Prompt), q.Answered, q.Skipped)
		for _, op := range q.Options {
			extra := ""
			if q.Kind == surveys.KindRanking {
				extra = fmt.Sprintf("\t%d points", op.Points)
			}
			fmt.Fprintf(tw, "   %s\t%d\t%.1f%%%s\n", oneLine(op.Label), op.Count, op.Percent, extra)
		}
		if q.Kind == surveys.KindScale {
			fmt.Fprintf(tw, "   mean\t%.2f\n", q.Mean)
		}
		for _, t := range q.Texts {
			fmt.Fprintf(tw, "   - %s\n", oneLine(t))
		}
	}
	tw.Flush()
}

// isSignedSurvey recognises a signed survey definition for 'kanal verify'.
func isSignedSurvey(b []byte) bool {
	var probe struct {
		Definition json.RawMessage `json:"definition"`
		Signature  []byte          `json:"signature"`
	}
	return json.Unmarshal(b, &probe) == nil && len(probe.Definition) > 0 && len(probe.Signature) > 0
}

// verifySurveyDocument is 'kanal verify FILE --ca ca.pem' for a signed
// survey definition: the same check as 'kanal survey verify'.
func verifySurveyDocument(c *cli, caFile string, b []byte) error {
	var s surveys.Signed
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("not a signed survey definition: %w", err)
	}
	return verifySignedSurvey(c, &surveyOpts{ca: caFile}, &s)
}

// surveyInvite sends survey.invite messages through the channel.
func surveyInvite(ctx context.Context, c *cli, o *opts, so *surveyOpts, args []string) error {
	if len(args) < 2 {
		return &usageError{cmd: "survey invite", msg: "usage: kanal survey invite ID ACCOUNT|GROUP..."}
	}
	id := args[0]
	var peers []mclient.Peer
	for _, a := range args[1:] {
		switch {
		case strings.HasPrefix(a, "acc_"), strings.HasPrefix(a, "g_"):
		default:
			return &usageError{cmd: "survey invite", msg: fmt.Sprintf("%q is not an account (acc_…) or group (g_…) id", a)}
		}
		peers = append(peers, mclient.Peer{AccountID: a})
		if strings.HasPrefix(a, "g_") {
			peers[len(peers)-1] = mclient.Peer{GroupID: a}
		}
	}
	st, err := c.openStore(false)
	if err != nil {
		return err
	}
	api, roots, err := c.surveyClient(ctx, o, so, st)
	if err != nil {
		return err
	}
	d, _, err := api.Definition(ctx, id, roots)
	if err != nil {
		return err
	}
	mc, err := c.messenger(ctx, o, st)
	if err != nil {
		return err
	}
	for _, p := range peers {
		if p.AccountID != "" {
			p.OrgID = d.OrgID // from the council, in its conversation with the citizen
		}
		m, err := kind.New("kanal-cli-"+newKey(), c.now(), &kind.SurveyInviteBody{SurveyID: id, Title: d.Title, ClosesAt: d.ClosesAt})
		if err != nil {
			return err
		}
		if _, err := mc.Send(ctx, p, m); err != nil {
			return fmt.Errorf("invite %s: %w", p, err)
		}
		who := p.GroupID
		if who == "" {
			who = p.AccountID + " (from " + d.OrgID + ")"
		}
		fmt.Fprintf(c.stdout, "Invited %s.\n", who)
	}
	return nil
}

// readSurveyFile reads a survey template: a definition without the fields
// kanal fills in.
func (c *cli) readSurveyFile(name string) (*surveys.Definition, error) {
	raw, err := c.readInput(name)
	if err != nil {
		return nil, err
	}
	var def surveys.Definition
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&def); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &def, nil
}

// surveyEdit re-signs and replaces a definition that has not opened yet.
func surveyEdit(ctx context.Context, c *cli, o *opts, so *surveyOpts, id, file string) error {
	def, err := c.readSurveyFile(file)
	if err != nil {
		return err
	}
	st, err := c.openStore(false)
	if err != nil {
		return err
	}
	keyPEM := getSecret(st, secretTallyKey+id)
	if keyPEM == "" {
		return fmt.Errorf("this key store has no tally key for survey %s: edit it where it was created", id)
	}
	priv, err := pemBlock([]byte(keyPEM), "KANAL SURVEY TALLY KEY")
	if err != nil {
		return err
	}
	pub, err := surveys.TallyPublic(priv)
	if err != nil {
		return err
	}
	api, roots, err := c.surveyClient(ctx, o, so, st)
	if err != nil {
		return err
	}
	old, _, err := api.Definition(ctx, id, roots)
	if err != nil {
		return err
	}
	ids, err := c.session(ctx, o, st)
	if err != nil {
		return err
	}
	dev, mem, org, err := organiserCertificates(ctx, ids, old.OrgID, st.Data.DeviceID)
	if err != nil {
		return err
	}
	now := c.now().UTC().Truncate(time.Second)
	def.Version, def.SurveyID, def.OrgID, def.Mode = 1, id, old.OrgID, old.Mode
	def.TokenKey, def.TallyKey, def.SignedAt = old.TokenKey, pub, now
	if def.OpensAt.IsZero() {
		def.OpensAt = now
	}
	signed, err := surveys.Sign(def, st.Data.DeviceKey, dev, mem, org)
	if err != nil {
		return err
	}
	if _, err := api.Define(ctx, id, signed); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Survey %s replaced, open %s to %s.\n", id, def.OpensAt.Local().Format(time.DateTime), def.ClosesAt.Local().Format(time.DateTime))
	return nil
}
