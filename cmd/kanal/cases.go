package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kanal-server/kanal/identity/keystore"
	mclient "github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/miniapps/cases"
	cclient "github.com/kanal-server/kanal/miniapps/cases/client"
	"github.com/kanal-server/kanal/miniapps/forms"
)

// The case inbox commands, for an office's agents. The server lists the
// cases' metadata; what the citizen answered and the agents' notes are
// read from this device's key store, where they arrived end to end.

type caseOpts struct {
	org      string
	status   string
	assignee string
	message  string
	creditor string
	iban     string
	bic      string
}

func caseCommands() []*command {
	var co caseOpts
	orgFlag := func(fs *flag.FlagSet) {
		fs.StringVar(&co.org, "org", "", "the `organisation` whose inbox it is (you must be one of its agents)")
	}
	return []*command{
		{
			name: "cases", args: "--org ORG [--status STATUS] [--assignee me|none|ACCOUNT]", nargs: 0,
			summary: "list an office's case inbox (fetches new submissions first)",
			help: `Reads what arrived first — new submissions are checked against their
template, notes and status changes recorded — then lists the office's
cases, newest first. ANSWERS says whether the citizen's answers are on
this device and fit the form.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				orgFlag(fs)
				fs.StringVar(&co.status, "status", "", "only cases in this `status` (received, in_progress, needs_information, decided)")
				fs.StringVar(&co.assignee, "assignee", "", "only cases assigned to `me`, none, or an account id")
			},
			run: func(ctx context.Context, c *cli, o *opts, _ []string) error { return listCases(ctx, c, o, &co) },
		},
		{
			name: "case show", args: "<case>", nargs: 1,
			summary: "show a case: status, history, the answers and the internal notes",
			run:     func(ctx context.Context, c *cli, o *opts, args []string) error { return showCase(ctx, c, o, args[0]) },
		},
		{
			name: "case assign", args: "<case> [me|ACCOUNT]", nargs: -1,
			summary: "assign a case to yourself or another agent of the office",
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				if len(args) < 1 || len(args) > 2 {
					return &usageError{cmd: "case assign", msg: "usage: kanal case assign <case> [me|ACCOUNT]"}
				}
				who := "me"
				if len(args) == 2 {
					who = args[1]
				}
				return assignCase(ctx, c, o, args[0], who)
			},
		},
		{
			name: "case status", args: "<case> <received|in_progress|needs_information|decided> [--message TEXT]", nargs: 2,
			summary: "move a case to another status; the citizen is told in the conversation",
			help: `The server announces the new status to the citizen and the office's agents.
With --message, the text goes to the citizen as the office, end to end
(the server does not see it): what information is needed, or the decision.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&co.message, "message", "", "a `text` for the citizen, sent end to end as the office")
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return setCaseStatus(ctx, c, o, &co, args[0], args[1])
			},
		},
		{
			name: "case note", args: "<case> <text>", nargs: 2,
			summary: "add an internal note, end to end to the office's agents only",
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return noteCase(ctx, c, o, args[0], args[1])
			},
		},
		{
			name: "case fee-account", args: "--org ORG [--creditor NAME --iban IBAN [--bic BIC]]", nargs: 0,
			summary: "show or set the account the office's form fees are paid to (setting: owners, admins)",
			flags: func(fs *flag.FlagSet, o *opts) {
				orgFlag(fs)
				fs.StringVar(&co.creditor, "creditor", "", "the creditor's `name` on the payment request")
				fs.StringVar(&co.iban, "iban", "", "the `IBAN` fees are paid to")
				fs.StringVar(&co.bic, "bic", "", "the `BIC`, for an IBAN outside the EEA")
			},
			run: func(ctx context.Context, c *cli, o *opts, _ []string) error { return setFeeAccount(ctx, c, o, &co) },
		},
	}
}

// casesAPI is the case inbox client with this device's session.
func (c *cli) casesAPI(ctx context.Context, o *opts, st *keystore.Store) (*cclient.Client, error) {
	if _, err := c.session(ctx, o, st); err != nil {
		return nil, err
	}
	return cclient.New(c.serverURL(o, st), st.Data.SessionToken, nil), nil
}

// caseRecord is what this device holds of a case: the submission as it
// arrived end to end, the check against its template, and the notes.
type caseRecord struct {
	CaseID       string             `json:"case_id"`
	Org          string             `json:"org,omitempty"`
	Citizen      string             `json:"citizen,omitempty"`
	SubmissionID string             `json:"submission_id,omitempty"`
	TemplateID   string             `json:"template_id,omitempty"`
	Version      string             `json:"version,omitempty"`
	Hash         string             `json:"hash,omitempty"`
	Answers      json.RawMessage    `json:"answers,omitempty"`
	Files        []kind.FormFile    `json:"files,omitempty"`
	Checked      bool               `json:"checked,omitempty"` // the answers fit the template
	Refused      []forms.FieldError `json:"refused,omitempty"`
	Problem      string             `json:"problem,omitempty"` // why the submission could not be checked
	Notes        []caseNote         `json:"notes,omitempty"`
	Status       string             `json:"status,omitempty"` // as the last notice said
	Seq          int                `json:"seq,omitempty"`
}

type caseNote struct {
	By   string    `json:"by"`
	At   time.Time `json:"at"`
	Text string    `json:"text"`
}

func caseName(id string) string { return "cli/case/" + id }

func (s *chatSession) loadCase(id string) (*caseRecord, error) {
	b, err := s.hist.store.Get(caseName(id))
	if errors.Is(err, mclient.ErrNotFound) {
		return &caseRecord{CaseID: id}, nil
	} else if err != nil {
		return nil, err
	}
	var r caseRecord
	return &r, json.Unmarshal(b, &r)
}

func (s *chatSession) saveCase(r *caseRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.hist.store.Put(caseName(r.CaseID), b)
}

// takeCase records what a message says about a case and returns the line
// to show instead of the summary ("" to keep it).
func (s *chatSession) takeCase(ctx context.Context, c *cli, o *opts, in *mclient.Incoming) (string, error) {
	me := s.st.Data.AccountID
	switch b := in.Message.Body.(type) {
	case *kind.FormSubmissionBody:
		if in.FromServer || in.SenderAccount == me || in.Reply.OrgID == "" {
			return "", nil // this account's own submission, synced to its other devices
		}
		r, err := s.loadCase(b.CaseID)
		if err != nil {
			return "", err
		}
		if r.SubmissionID != "" && r.SubmissionID != b.SubmissionID {
			return fmt.Sprintf("a second submission %s claims case %s: ignored", b.SubmissionID, b.CaseID), nil
		}
		r.Org, r.Citizen, r.SubmissionID = in.Reply.OrgID, in.SenderAccount, b.SubmissionID
		r.TemplateID, r.Version, r.Hash, r.Answers, r.Files = b.TemplateID, b.Version, b.TemplateHash, b.Answers, b.Attachments
		r.Checked, r.Refused, r.Problem = false, nil, ""
		line := ""
		if t, err := s.formTemplate(ctx, c, o, in.Reply.OrgID, b.TemplateID, b.Version, b.TemplateHash, true); err != nil {
			r.Problem = err.Error()
			line = fmt.Sprintf("form submission for case %s REFUSED: %v", b.CaseID, err)
		} else {
			var infos []forms.AttachmentInfo
			for _, f := range b.Attachments {
				infos = append(infos, forms.AttachmentInfo{Name: f.Field, MediaType: f.MIME, Size: f.AttachmentBody.PlainSize()})
			}
			if errs := t.Check(b.Answers, infos); errs != nil {
				r.Refused = errs.Fields
				var why []string
				for _, fe := range errs.Fields {
					why = append(why, fe.Field+": "+fe.EN)
				}
				line = fmt.Sprintf("form submission for case %s REFUSED, the answers do not fit %s %s: %s", b.CaseID, b.TemplateID, b.Version, strings.Join(why, "; "))
			} else {
				r.Checked = true
				line = fmt.Sprintf("form %s (%s %s) submitted: case %s, answers checked — kanal case show %s", t.Title.DE, b.TemplateID, b.Version, b.CaseID, b.CaseID)
			}
		}
		return line, s.saveCase(r)
	case *kind.CaseNoteBody:
		if in.Org == nil {
			return "", nil // the SDK accepts no other; kept out all the same
		}
		r, err := s.loadCase(b.CaseID)
		if err != nil {
			return "", err
		}
		r.Notes = append(r.Notes, caseNote{By: in.SenderAccount, At: in.ServerTime, Text: b.Text})
		return "", s.saveCase(r)
	case *kind.CaseStatusBody:
		if !in.FromServer {
			return "", nil
		}
		r, err := s.loadCase(b.CaseID)
		if err != nil {
			return "", err
		}
		if b.Seq > r.Seq {
			r.Status, r.Seq = b.Status, b.Seq
		}
		line := fmt.Sprintf("case %s: %s, due %s", b.CaseID, statusLabel(b.Status), b.DueDate)
		if b.Assignee != "" {
			line += ", assigned to " + s.names.account(b.Assignee)
		}
		return line, s.saveCase(r)
	}
	return "", nil
}

// statusLabel is a case status in German and English.
func statusLabel(id string) string {
	for _, st := range forms.DefaultStatuses() {
		if st.ID == id {
			return st.Label.DE + " / " + st.Label.EN
		}
	}
	return id
}

// openCases opens the chat (reading what arrived) and the cases API.
func (c *cli) openCases(ctx context.Context, o *opts) (*chatSession, *cclient.Client, error) {
	s, err := c.openChat(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	if err := s.fetch(ctx, c, 0, func(entry) {}); err != nil {
		return nil, nil, err
	}
	api, err := c.casesAPI(ctx, o, s.st)
	return s, api, err
}

func listCases(ctx context.Context, c *cli, o *opts, co *caseOpts) error {
	if co.org == "" {
		return &usageError{cmd: "cases", msg: "--org is required: whose inbox?"}
	}
	s, api, err := c.openCases(ctx, o)
	if err != nil {
		return err
	}
	f := cases.Filter{Status: co.status, Assignee: co.assignee}
	if f.Assignee == "me" {
		f.Assignee = s.st.Data.AccountID
	}
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "CASE\tSTATUS\tASSIGNEE\tDUE\tFORM\tCITIZEN\tANSWERS")
	n := 0
	for {
		page, err := api.List(ctx, co.org, f)
		if err != nil {
			return err
		}
		for _, cs := range page.Cases {
			assignee := "-"
			if cs.Assignee != "" {
				assignee = s.names.account(cs.Assignee)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s %s\t%s\t%s\n", cs.ID, cs.Status, assignee, cs.DueDate, cs.TemplateID, cs.Version,
				s.names.account(cs.Citizen), s.answerState(&cs))
			n++
		}
		if page.Next == "" {
			break
		}
		f.After = page.Next
	}
	if n == 0 {
		fmt.Fprintln(c.stdout, "no cases")
		return nil
	}
	return w.Flush()
}

// answerState says whether this device holds the case's answers and
// whether they fit the form and the server's record of the case.
func (s *chatSession) answerState(cs *cases.Case) string {
	r, err := s.loadCase(cs.ID)
	switch {
	case err != nil:
		return "unreadable"
	case r.SubmissionID == "":
		return "not on this device"
	case r.SubmissionID != cs.SubmissionID || r.Hash != cs.TemplateHash || r.Citizen != cs.Citizen || r.Org != cs.OrgID:
		return "MISMATCH with the server's case"
	case r.Checked:
		return "checked"
	default:
		return "REFUSED"
	}
}

func showCase(ctx context.Context, c *cli, o *opts, id string) error {
	s, api, err := c.openCases(ctx, o)
	if err != nil {
		return err
	}
	res, err := api.Get(ctx, id)
	if err != nil {
		return err
	}
	cs := res.Case
	fmt.Fprintf(c.stdout, "Case %s — %s %s (%s)\n", cs.ID, cs.TemplateID, cs.Version, cs.TemplateHash)
	fmt.Fprintf(c.stdout, "status:   %s\n", statusLabel(cs.Status))
	fmt.Fprintf(c.stdout, "citizen:  %s\n", s.names.account(cs.Citizen))
	if cs.Assignee != "" {
		fmt.Fprintf(c.stdout, "assignee: %s\n", s.names.account(cs.Assignee))
	}
	fmt.Fprintf(c.stdout, "due:      %s\n", cs.DueDate)
	if cs.FeeRequest != "" {
		fmt.Fprintf(c.stdout, "fee:      %s (kanal pay show %s)\n", cs.FeeRequest, cs.FeeRequest)
	}
	fmt.Fprintln(c.stdout, "history:")
	for _, e := range res.Events {
		who := strings.TrimPrefix(e.Actor, "account:")
		line := fmt.Sprintf("  %d %s %s by %s", e.Seq, e.At.Local().Format("2006-01-02 15:04"), e.Status, s.names.account(who))
		if e.Assignee != "" {
			line += ", assigned to " + s.names.account(e.Assignee)
		}
		fmt.Fprintln(c.stdout, line)
	}
	r, err := s.loadCase(id)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "answers (%s):\n", s.answerState(cs))
	if r.SubmissionID != "" {
		var answers map[string]json.RawMessage
		json.Unmarshal(r.Answers, &answers)
		t, terr := s.formTemplate(ctx, c, o, r.Org, r.TemplateID, r.Version, r.Hash, true)
		var order []string
		if terr == nil {
			order = t.Fields()
		}
		for _, n := range order {
			f, _ := t.Field(n)
			if v, ok := answers[n]; ok {
				fmt.Fprintf(c.stdout, "  %s: %s\n", f.Label.DE, showValue(v))
			}
			for _, file := range r.Files {
				if file.Field == n {
					fmt.Fprintf(c.stdout, "  %s: %s (%s, %s)\n", f.Label.DE, displayName(file.Name), size(file.AttachmentBody.PlainSize()), file.MIME)
				}
			}
		}
		for _, fe := range r.Refused {
			fmt.Fprintf(c.stdout, "  ✗ %s: %s / %s\n", fe.Field, fe.DE, fe.EN)
		}
		if r.Problem != "" {
			fmt.Fprintf(c.stdout, "  ✗ %s\n", r.Problem)
		}
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(c.stdout, "internal notes:")
		for _, n := range r.Notes {
			fmt.Fprintf(c.stdout, "  [%s] %s: %s\n", n.At.Local().Format("2006-01-02 15:04"), s.names.account(n.By), n.Text)
		}
	}
	return nil
}

func showValue(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	switch string(v) {
	case "true":
		return "ja / yes"
	case "false":
		return "nein / no"
	}
	return string(v)
}

func assignCase(ctx context.Context, c *cli, o *opts, id, who string) error {
	st, err := c.openStore(false)
	if err != nil {
		return err
	}
	api, err := c.casesAPI(ctx, o, st)
	if err != nil {
		return err
	}
	if who == "me" {
		who = st.Data.AccountID
	}
	cs, err := api.Assign(ctx, id, who)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Case %s assigned to %s (%s).\n", cs.ID, who, cs.Status)
	return nil
}

func setCaseStatus(ctx context.Context, c *cli, o *opts, co *caseOpts, id, status string) error {
	if !cases.ValidStatus(status) {
		return &usageError{cmd: "case status", msg: "status must be received, in_progress, needs_information or decided"}
	}
	s, err := c.openChat(ctx, o)
	if err != nil {
		return err
	}
	api, err := c.casesAPI(ctx, o, s.st)
	if err != nil {
		return err
	}
	cs, err := api.SetStatus(ctx, id, status)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Case %s is now %s.\n", cs.ID, statusLabel(cs.Status))
	if co.message != "" {
		if _, err := s.sendBody(ctx, c, mclient.Peer{OrgID: cs.OrgID, AccountID: cs.Citizen}, &kind.TextBody{Text: co.message}, nil); err != nil {
			return fmt.Errorf("the status is set, the message not sent: %w", err)
		}
		fmt.Fprintf(c.stdout, "Message sent to %s.\n", s.names.account(cs.Citizen))
	}
	return nil
}

func noteCase(ctx context.Context, c *cli, o *opts, id, text string) error {
	s, err := c.openChat(ctx, o)
	if err != nil {
		return err
	}
	api, err := c.casesAPI(ctx, o, s.st)
	if err != nil {
		return err
	}
	res, err := api.Get(ctx, id) // an agent of the case's office, or refused
	if err != nil {
		return err
	}
	if res.Case.Citizen == s.st.Data.AccountID {
		return errors.New("notes are the office's; write to the office with 'kanal send'")
	}
	if _, err := s.sendBody(ctx, c, mclient.Peer{OrgID: res.Case.OrgID}, &kind.CaseNoteBody{CaseID: id, Text: text}, nil); err != nil {
		return err
	}
	r, err := s.loadCase(id)
	if err != nil {
		return err
	}
	r.Notes = append(r.Notes, caseNote{By: s.st.Data.AccountID, At: c.now().UTC(), Text: text})
	if err := s.saveCase(r); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Note on case %s sent to the office's agents.\n", id)
	return nil
}

func setFeeAccount(ctx context.Context, c *cli, o *opts, co *caseOpts) error {
	if co.org == "" || (co.creditor == "") != (co.iban == "") {
		return &usageError{cmd: "case fee-account", msg: "--org is required, and --creditor and --iban go together"}
	}
	st, err := c.openStore(false)
	if err != nil {
		return err
	}
	api, err := c.casesAPI(ctx, o, st)
	if err != nil {
		return err
	}
	if co.iban == "" {
		a, err := api.FeeAccount(ctx, co.org)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "Form fees of %s are paid to %s, %s.\n", co.org, a.Creditor, a.IBAN)
		return nil
	}
	a, err := api.SetFeeAccount(ctx, co.org, cases.FeeAccount{Creditor: co.creditor, IBAN: co.iban, BIC: co.bic})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Form fees of %s are paid to %s, %s.\n", co.org, a.Creditor, a.IBAN)
	return nil
}
