package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/kanal-server/kanal/messaging"
	mclient "github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/miniapps/cases"
	"github.com/kanal-server/kanal/miniapps/forms"
)

// The form commands. An office's agent sends a form.request naming a
// template version; the citizen's 'kanal form fill' fetches the template,
// checks its hash, asks field by field (keeping a draft in the key store),
// checks the answers against the template, registers the submission (the
// server opens a case and, for a template with a fee, its payment
// request) and sends the answers end to end to the office's agents.

type formOpts struct {
	org      string
	template string
	prefill  []string
	answers  string
	lang     string
}

func formCommands() []*command {
	var fo formOpts
	return []*command{
		{
			name: "form request", args: "--org ORG <citizen> <template[@version]>", nargs: 2,
			summary: "send a citizen a form to fill in (agents)",
			help: `Fetches the office's template from the catalogue (the newest version
unless one is named) and verifies it, then sends a form.request naming the
template's id, version and hash, with
values the office already knows (--prefill field=value, repeatable). The
citizen fills it with 'kanal form fill'.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&fo.org, "org", "", "the `organisation` you send it for (you must be one of its agents)")
				fs.Func("prefill", "a `field=value` the office already knows (repeatable; JSON values such as true or 3 are read as such)", func(s string) error {
					fo.prefill = append(fo.prefill, s)
					return nil
				})
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return formRequest(ctx, c, o, &fo, args[0], args[1])
			},
		},
		{
			name: "form fill", args: "<request|org> [--template ID]", nargs: 1,
			summary: "fill in a form field by field and submit it to the office",
			help: `Fetches the template the office's form.request names (the request's id,
or the office's id for its newest request; or --template to start a form of
the office's yourself), checks its hash, and asks field by field. An answer
that does not fit is refused at once with the reason in German and English,
and asked again; an empty line skips an optional field (or keeps a
prefilled one). The answers are kept as a draft in the key store after
each field, so an interrupted form continues where it stopped. Before
sending, every answer is checked against the template once more.

The answers go end to end to the office's agents; the server sees only
that a case was opened for the template. A form with a fee creates its
payment request when submitted: pay it with 'kanal pay checkout'.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&fo.template, "template", "", "start this `template` of the office yourself (with an org id)")
				fs.StringVar(&fo.answers, "answers", "", "take the answers from this JSON `file` instead of asking")
				fs.StringVar(&fo.lang, "lang", "de", "show labels in `de` or en (errors are shown in both)")
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return formFill(ctx, c, o, &fo, args[0])
			},
		},
	}
}

// formTemplate fetches the template version id@version and checks it
// against this device's CA, not trusting the server (forms/client's
// Verified: signature, chain, publisher, the hash named).
func (s *chatSession) formTemplate(ctx context.Context, c *cli, o *opts, org, id, version, hash string, withdrawn bool) (*forms.Template, error) {
	caC, err := caCert(s.st)
	if err != nil {
		return nil, err
	}
	return c.forms(o, s.st).Verified(ctx, org, id, version, hash, withdrawn, caC, storedIntermediates(s.st)...)
}

func formRequest(ctx context.Context, c *cli, o *opts, fo *formOpts, citizen, template string) error {
	if fo.org == "" || !strings.HasPrefix(citizen, "acc_") {
		return &usageError{cmd: "form request", msg: "usage: kanal form request --org ORG <citizen account id> <template>"}
	}
	s, err := c.openChat(ctx, o)
	if err != nil {
		return err
	}
	id, version := splitRef(template)
	t, err := s.formTemplate(ctx, c, o, fo.org, id, version, "", false)
	if err != nil {
		return err
	}
	prefill := map[string]json.RawMessage{}
	for _, p := range fo.prefill {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return &usageError{cmd: "form request", msg: "--prefill takes field=value"}
		}
		if _, ok := t.Field(k); !ok {
			return fmt.Errorf("the form %s has no field %q", t.ID, k)
		}
		prefill[k] = jsonValue(v)
	}
	body := &kind.FormRequestBody{RequestID: "fr_" + newKey()[:20], TemplateID: t.ID, Version: t.Version, TemplateHash: t.Hash(), Title: t.Title.DE}
	if len(prefill) > 0 {
		raw, _ := json.Marshal(prefill)
		if errs := t.Check(raw, nil); errs != nil {
			for _, f := range errs.Fields {
				if _, given := prefill[f.Field]; given {
					return fmt.Errorf("prefilled %s does not fit the form: %s / %s", f.Field, f.DE, f.EN)
				}
			}
		}
		body.Prefill = raw
	}
	if _, err := s.sendBody(ctx, c, mclient.Peer{OrgID: fo.org, AccountID: citizen}, body, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Sent form %s %s (%s) to %s.\n%s\n", t.ID, t.Version, t.Title.DE, s.names.account(citizen), body.RequestID)
	return nil
}

// jsonValue reads a command-line value: JSON when it parses as a JSON
// scalar (true, 3), else the text.
func jsonValue(v string) json.RawMessage {
	var x any
	if json.Unmarshal([]byte(v), &x) == nil {
		switch x.(type) {
		case bool, float64, nil:
			return json.RawMessage(v)
		}
	}
	b, _ := json.Marshal(v)
	return b
}

// draft is a form being filled, kept in the key store.
type draft struct {
	Org        string                     `json:"org"`
	RequestID  string                     `json:"request_id,omitempty"`
	TemplateID string                     `json:"template_id"`
	Version    string                     `json:"version"`
	Hash       string                     `json:"hash"`
	Answers    map[string]json.RawMessage `json:"answers"`
	Files      map[string]string          `json:"files,omitempty"` // attachment field → local path
	Done       []string                   `json:"done,omitempty"`  // fields asked
	Submission string                     `json:"submission_id"`
	CaseID     string                     `json:"case_id,omitempty"`
}

func draftName(key string) string { return "cli/form-draft/" + key }

func formFill(ctx context.Context, c *cli, o *opts, fo *formOpts, target string) error {
	s, err := c.openChat(ctx, o)
	if err != nil {
		return err
	}
	// What arrived first: the request may be waiting in the inbox.
	if err := s.fetch(ctx, c, 0, func(entry) {}); err != nil {
		return err
	}
	d, err := s.startDraft(ctx, c, o, fo, target)
	if err != nil {
		return err
	}
	t, err := s.formTemplate(ctx, c, o, d.Org, d.TemplateID, d.Version, d.Hash, false)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Formular / form: %s (%s %s)\n", text(t.Title, fo.lang), t.ID, t.Version)
	if t.Fee != nil {
		fmt.Fprintf(c.stdout, "Gebühr / fee: EUR %d.%02d (%s)\n", t.Fee.AmountCents/100, t.Fee.AmountCents%100, t.Fee.Purpose)
	}
	if fo.answers != "" {
		b, err := os.ReadFile(fo.answers)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &d.Answers); err != nil {
			return fmt.Errorf("%s: not a JSON object: %w", fo.answers, err)
		}
	} else if err := s.ask(c, t, d, fo.lang); err != nil {
		return err
	}
	return s.submit(ctx, c, o, t, d)
}

// startDraft continues the draft for target, or starts one from the
// form.request target names (or the office's newest request, or
// --template).
func (s *chatSession) startDraft(ctx context.Context, c *cli, o *opts, fo *formOpts, target string) (*draft, error) {
	var req *kind.FormRequestBody
	org := ""
	switch {
	case strings.HasPrefix(target, "org_") && fo.template != "":
		id, version := splitRef(fo.template)
		t, err := s.formTemplate(ctx, c, o, target, id, version, "", false)
		if err != nil {
			return nil, err
		}
		req, org = &kind.FormRequestBody{RequestID: "self-" + t.ID, TemplateID: t.ID, Version: t.Version, TemplateHash: t.Hash()}, target
	default:
		for i := len(s.hist.entries) - 1; i >= 0; i-- {
			e := s.hist.entries[i]
			if e.Form == nil || e.ReplyOrg != "" {
				continue
			}
			if e.ID == target || e.Form.RequestID == target || e.Reply == target {
				req, org = e.Form, e.Reply
				if e.From == "kanal" {
					var err error
					if org, err = s.noticeFormOrg(ctx, c, o, e); err != nil {
						return nil, err
					}
				}
				break
			}
		}
	}
	if req == nil {
		return nil, fmt.Errorf("no form request %s has arrived; the office sends one with 'kanal form request'", target)
	}
	key := org + "-" + req.RequestID
	var d draft
	if b, err := s.hist.store.Get(draftName(key)); err == nil {
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, err
		}
		if d.Hash == req.TemplateHash {
			fmt.Fprintf(c.stdout, "Entwurf fortgesetzt / continuing the draft (%d answers).\n", len(d.Answers))
			return &d, nil
		}
	}
	d = draft{Org: org, RequestID: req.RequestID, TemplateID: req.TemplateID, Version: req.Version, Hash: req.TemplateHash,
		Answers: map[string]json.RawMessage{}, Files: map[string]string{}, Submission: "sub_" + newKey()[:20]}
	if strings.HasPrefix(req.RequestID, "self-") {
		d.RequestID = ""
	}
	if len(req.Prefill) > 0 {
		if err := json.Unmarshal(req.Prefill, &d.Answers); err != nil {
			return nil, err
		}
	}
	return &d, s.saveDraft(&d)
}

// noticeFormOrg is the office of a form request a mini-app sent as a
// server notice. The notice names no office; its signed conversation is
// the one between this account and an organisation
// (messaging.OrgConversation), so the office is the template's publisher
// when that conversation follows from it. The template's signature, chain,
// publisher and hash are checked again (formTemplate) before filling in.
func (s *chatSession) noticeFormOrg(ctx context.Context, c *cli, o *opts, e entry) (string, error) {
	got, err := c.forms(o, s.st).Get(ctx, e.Form.TemplateID, e.Form.Version, false)
	if err != nil {
		return "", fmt.Errorf("the form %s %s: %w", e.Form.TemplateID, e.Form.Version, err)
	}
	if messaging.OrgConversation(got.OrgID, s.st.Data.AccountID) != e.Conversation {
		return "", fmt.Errorf("the form request %s arrived in a conversation that is not yours with %s, the form's publisher: refused", e.Form.RequestID, got.OrgID)
	}
	return got.OrgID, nil
}

func (d *draft) key() string {
	if d.RequestID == "" {
		return d.Org + "-self-" + d.TemplateID
	}
	return d.Org + "-" + d.RequestID
}

func (s *chatSession) saveDraft(d *draft) error {
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	return s.hist.store.Put(draftName(d.key()), b)
}

func (d *draft) answersJSON() []byte {
	b, _ := json.Marshal(d.Answers)
	return b
}

// infos describes the draft's files as the template checks them.
func (d *draft) infos() ([]forms.AttachmentInfo, error) {
	var out []forms.AttachmentInfo
	names := make([]string, 0, len(d.Files))
	for n := range d.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f, err := readLocalFile(d.Files[n], "")
		if err != nil {
			return nil, err
		}
		out = append(out, forms.AttachmentInfo{Name: n, MediaType: f.mime, Size: int64(len(f.data))})
	}
	return out, nil
}

func text(t forms.Text, lang string) string {
	if lang == "en" {
		return t.EN
	}
	return t.DE
}

// ask asks, in layout order, the first visible field not yet asked, until
// none is left (an answer may show more fields); then it asks again every
// field the whole form still refuses.
func (s *chatSession) ask(c *cli, t *forms.Template, d *draft, lang string) error {
	in := bufio.NewReader(c.stdin)
	asked := map[string]bool{}
	for _, n := range d.Done {
		asked[n] = true
	}
	for round := 0; round < 50; round++ {
		next := ""
		for _, name := range t.Visible(d.answersJSON()) {
			if !asked[name] {
				next = name
				break
			}
		}
		if next != "" {
			if err := s.askField(c, in, t, d, next, lang); err != nil {
				return err
			}
			asked[next] = true
			d.Done = append(d.Done, next)
			if err := s.saveDraft(d); err != nil {
				return err
			}
			round = 0
			continue
		}
		infos, err := d.infos()
		if err != nil {
			return err
		}
		errs := t.Check(d.answersJSON(), infos)
		if errs == nil {
			return nil
		}
		// Answers to fields no longer shown are dropped; the fields that
		// are refused are asked again.
		visible := map[string]bool{}
		for _, n := range t.Visible(d.answersJSON()) {
			visible[n] = true
		}
		for _, fe := range errs.Fields {
			switch {
			case fe.Field == "":
				return fmt.Errorf("the form is refused: %s / %s", fe.DE, fe.EN)
			case !visible[fe.Field]:
				delete(d.Answers, fe.Field)
				delete(d.Files, fe.Field)
			default:
				showFieldError(c, fe)
				delete(asked, fe.Field)
				d.Done = slices.DeleteFunc(d.Done, func(n string) bool { return n == fe.Field })
			}
		}
	}
	return errors.New("the form could not be completed")
}

func showFieldError(c *cli, fe forms.FieldError) {
	fmt.Fprintf(c.stdout, "  ✗ %s: %s / %s\n", fe.Field, fe.DE, fe.EN)
}

// askField asks one field until its answer fits.
func (s *chatSession) askField(c *cli, in *bufio.Reader, t *forms.Template, d *draft, name, lang string) error {
	f, _ := t.Field(name)
	for {
		required := t.Required(name, d.answersJSON())
		label := text(f.Label, lang)
		hint := fieldHint(t, name)
		mark := ""
		if required {
			mark = " *"
		}
		cur := ""
		if v, ok := d.Answers[name]; ok {
			cur = " [" + string(v) + "]"
		} else if p, ok := d.Files[name]; ok {
			cur = " [" + p + "]"
		}
		if f.Help != nil {
			fmt.Fprintf(c.stdout, "  (%s)\n", text(*f.Help, lang))
		}
		fmt.Fprintf(c.stdout, "%s%s%s%s: ", label, mark, hint, cur)
		line, err := in.ReadString('\n')
		if err != nil && (err != io.EOF || line == "") {
			return fmt.Errorf("the form was left at %s; the draft is kept: run 'kanal form fill' again", name)
		}
		line = strings.TrimRight(line, "\r\n")
		if strings.TrimSpace(line) == "" {
			_, answered := d.Answers[name]
			_, filed := d.Files[name]
			if required && !answered && !filed {
				showFieldError(c, forms.FieldError{Field: name, DE: "Bitte ausfüllen: Pflichtangabe.", EN: "Please fill in: this field is required."})
				continue
			}
			return nil
		}
		if t.IsAttachment(name) {
			lf, err := readLocalFile(line, "")
			if err != nil {
				showFieldError(c, forms.FieldError{Field: name, DE: "Die Datei kann nicht gelesen werden.", EN: err.Error()})
				continue
			}
			if errs := t.Check(d.answersJSON(), []forms.AttachmentInfo{{Name: name, MediaType: lf.mime, Size: int64(len(lf.data))}}); errs != nil {
				if fe := errs.For(name); len(fe) > 0 {
					for _, e := range fe {
						showFieldError(c, e)
					}
					continue
				}
			}
			d.Files[name] = line
			return nil
		}
		v := parseAnswer(t.PropertySchema(name), line)
		trial := map[string]json.RawMessage{}
		for k, x := range d.Answers {
			trial[k] = x
		}
		trial[name] = v
		b, _ := json.Marshal(trial)
		if errs := t.Check(b, nil); errs != nil {
			if fe := errs.For(name); len(fe) > 0 {
				for _, e := range fe {
					showFieldError(c, e)
				}
				continue
			}
		}
		d.Answers[name] = v
		return nil
	}
}

// fieldHint says what a field takes: its choices, yes/no, a date.
func fieldHint(t *forms.Template, name string) string {
	if a, ok := t.Attachment(name); ok {
		return fmt.Sprintf(" (Datei / file: %s, max %s)", strings.Join(a.MediaTypes, ", "), size(a.MaxBytes))
	}
	var s struct {
		Type   string `json:"type"`
		Enum   []any  `json:"enum"`
		Format string `json:"format"`
	}
	json.Unmarshal(t.PropertySchema(name), &s)
	switch {
	case len(s.Enum) > 0:
		var vs []string
		for _, v := range s.Enum {
			vs = append(vs, fmt.Sprint(v))
		}
		return " (" + strings.Join(vs, "|") + ")"
	case s.Type == "boolean":
		return " (ja/nein)"
	case s.Format == "date":
		return " (JJJJ-MM-TT)"
	case s.Type == "integer" || s.Type == "number":
		return " (Zahl)"
	}
	return ""
}

// parseAnswer reads a typed line as the JSON value the field's schema
// takes: yes/no for a boolean, a number for a number, else text.
func parseAnswer(schema json.RawMessage, line string) json.RawMessage {
	var s struct {
		Type string `json:"type"`
		Enum []any  `json:"enum"`
	}
	json.Unmarshal(schema, &s)
	v := strings.TrimSpace(line)
	switch s.Type {
	case "boolean":
		switch strings.ToLower(v) {
		case "ja", "j", "yes", "y", "true":
			return json.RawMessage("true")
		case "nein", "n", "no", "false":
			return json.RawMessage("false")
		}
	case "integer", "number":
		if _, err := strconv.ParseFloat(v, 64); err == nil {
			return json.RawMessage(v)
		}
	}
	b, _ := json.Marshal(line)
	return b
}

// submit checks the whole form once more, registers the submission (the
// server opens the case), uploads the files and sends the answers end to
// end to the office's agents.
func (s *chatSession) submit(ctx context.Context, c *cli, o *opts, t *forms.Template, d *draft) error {
	infos, err := d.infos()
	if err != nil {
		return err
	}
	raw := d.answersJSON()
	if errs := t.Check(raw, infos); errs != nil {
		for _, fe := range errs.Fields {
			showFieldError(c, fe)
		}
		return errors.New("the form is not sent: answers do not fit the form (the draft is kept)")
	}
	api, err := c.casesAPI(ctx, o, s.st)
	if err != nil {
		return err
	}
	cs, err := api.Open(ctx, d.Org, cases.OpenRequest{SubmissionID: d.Submission, TemplateID: d.TemplateID, Version: d.Version, TemplateHash: d.Hash})
	if err != nil {
		return err
	}
	d.CaseID = cs.ID
	if err := s.saveDraft(d); err != nil {
		return err
	}
	body := &kind.FormSubmissionBody{SubmissionID: d.Submission, CaseID: cs.ID, RequestID: d.RequestID, TemplateID: d.TemplateID,
		Version: d.Version, TemplateHash: d.Hash, Answers: raw}
	for _, in := range infos {
		lf, err := readLocalFile(d.Files[in.Name], "")
		if err != nil {
			return err
		}
		a, err := s.mc.UploadAttachment(ctx, lf.data, lf.mime, lf.name)
		if err != nil {
			return err
		}
		body.Attachments = append(body.Attachments, kind.FormFile{Field: in.Name, AttachmentBody: *a})
	}
	if _, err := s.sendBody(ctx, c, mclient.Peer{OrgID: d.Org}, body, nil); err != nil {
		return err
	}
	if err := s.hist.store.Delete(draftName(d.key())); err != nil && !errors.Is(err, mclient.ErrNotFound) {
		return err
	}
	fmt.Fprintf(c.stdout, "Gesendet / submitted: case %s, %s, due %s.\n", cs.ID, cs.Status, cs.DueDate)
	if cs.FeeRequest != "" {
		fmt.Fprintf(c.stdout, "Gebühr / fee EUR %d.%02d: kanal pay checkout %s\n", t.Fee.AmountCents/100, t.Fee.AmountCents%100, cs.FeeRequest)
	}
	return nil
}
