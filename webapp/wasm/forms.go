//go:build js && wasm

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"syscall/js"
	"time"

	mclient "github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/miniapps/cases"
	cclient "github.com/kanal-server/kanal/miniapps/cases/client"
	"github.com/kanal-server/kanal/miniapps/forms"
	fclient "github.com/kanal-server/kanal/miniapps/forms/client"
)

// Forms and the case inbox, through the calls kanal form fill and kanal
// cases make: the template is fetched and verified on this device
// (forms/client's Verified, as the CLI), answers are checked with
// Template.Check before anything is sent, the case is opened at kanald
// (never with an answer) and the answers go end to end to the office's
// agents as a form.submission. An agent's device checks each submission
// on arrival and keeps it; the inbox lists kanald's cases beside what
// this device holds. The page (forms.js) renders what these return.

// The device keeps, per form request, the submission made for it
// (app/form/<org>/<request>), and, on an agent's device, each case's
// submission as it arrived end to end (app/case/<id>).
func nameFormSubmission(org, request string) string { return "app/form/" + org + "/" + request }
func nameCaseRecord(id string) string               { return "app/case/" + id }

// formBody is what an entry keeps of a form message the page acts on: a
// form request only when a verified agent sent it in this account's
// conversation with the office (the SDK proved the membership; the
// conversation names the office), and the server's case notices.
func formBody(in *mclient.Incoming) json.RawMessage {
	var keep bool
	switch in.Message.Body.(type) {
	case *kind.FormRequestBody:
		keep = in.Org != nil && !in.FromServer && in.Reply.OrgID != "" && in.Reply.AccountID == "" && in.Reply.GroupID == "" &&
			in.Org.OrgID == in.Reply.OrgID
	case *kind.CaseStatusBody:
		keep = in.FromServer
	}
	if !keep {
		return nil
	}
	b, err := json.Marshal(in.Message.Body)
	if err != nil {
		return nil
	}
	return b
}

func (d *device) forms(base string) *fclient.Client { return fclient.New(base, d.token, nil) }
func (d *device) cases(base string) *cclient.Client { return cclient.New(base, d.token, nil) }

// template fetches and verifies a template version as kanal form fill
// and kanal cases do.
func (a *app) template(ctx context.Context, dev *device, org, id, version, hash string, withdrawn bool) (*forms.Template, error) {
	root, inters, err := dev.st.roots()
	if err != nil {
		return nil, err
	}
	return dev.forms(a.base).Verified(ctx, org, id, version, hash, withdrawn, root, inters...)
}

// ---- the citizen: a form request ----

// fieldView is one field as the page renders it. Control is the kind of
// input the field's schema asks for: text, textarea, date, email,
// number, boolean (yes or no), confirm (a box that must be ticked),
// choice (one of Options), checks (some of Options), list (rows of
// Columns), file (an attachment), or json (a schema the page has no
// control for: the answer is typed as JSON).
type fieldView struct {
	Name      string            `json:"name"`
	Label     forms.Text        `json:"label"`
	Help      *forms.Text       `json:"help,omitempty"`
	Control   string            `json:"control"`
	Options   []json.RawMessage `json:"options,omitempty"`
	Min       *float64          `json:"min,omitempty"`
	Max       *float64          `json:"max,omitempty"`
	Step      float64           `json:"step,omitempty"`
	MaxLength int               `json:"max_length,omitempty"`
	Columns   []fieldView       `json:"columns,omitempty"`
	MinItems  int               `json:"min_items,omitempty"`
	MaxItems  int               `json:"max_items,omitempty"`
	Accept    []string          `json:"accept,omitempty"`
	MaxBytes  int64             `json:"max_bytes,omitempty"`
	// ColumnRequired: a list row's column must be filled.
	ColumnRequired bool `json:"column_required,omitempty"`
}

type pageView struct {
	Title  forms.Text  `json:"title"`
	Fields []fieldView `json:"fields"`
}

type formView struct {
	MessageID   string          `json:"message_id"`
	RequestID   string          `json:"request_id"`
	OrgID       string          `json:"org_id"`
	OrgName     string          `json:"org_name"`
	TemplateID  string          `json:"template_id"`
	Version     string          `json:"version"`
	Hash        string          `json:"hash"`
	Title       forms.Text      `json:"title"`
	Description *forms.Text     `json:"description,omitempty"`
	FeeCents    int64           `json:"fee_cents,omitempty"`
	FeePurpose  string          `json:"fee_purpose,omitempty"`
	Pages       []pageView      `json:"pages"`
	Prefill     json.RawMessage `json:"prefill,omitempty"`
	Submitted   *receiptOfForm  `json:"submitted,omitempty"`
	formState
}

// formState is which fields are shown and which are required, for the
// answers given so far (show_if, require_if).
type formState struct {
	Visible  []string `json:"visible"`
	Required []string `json:"required"`
}

// submission is what the citizen's device keeps of its submission for
// one request: the id is fixed before the case is opened, so that a
// retry opens the same case.
type submission struct {
	SubmissionID string    `json:"submission_id"`
	CaseID       string    `json:"case_id,omitempty"`
	Sent         bool      `json:"sent,omitempty"`
	At           time.Time `json:"at,omitempty"`
}

type receiptOfForm struct {
	CaseID       string    `json:"case_id"`
	SubmissionID string    `json:"submission_id"`
	Status       string    `json:"status"`
	DueDate      string    `json:"due_date"`
	FeeRequest   string    `json:"fee_request,omitempty"`
	At           time.Time `json:"at"`
}

// formRequest finds a received form request and its verified template.
func (a *app) formRequest(ctx context.Context, id string) (entry, *kind.FormRequestBody, *device, *forms.Template, error) {
	var req kind.FormRequestBody
	e, err := a.received(id, kind.FormRequest, &req)
	if err != nil {
		return e, nil, nil, nil, err
	}
	if e.Org == "" || e.Peer.Org == "" || e.Peer.Account != "" {
		return e, nil, nil, nil, errors.New("the form request does not come from a verified agent of an office in your conversation with it: refused")
	}
	dev, err := a.device()
	if err != nil {
		return e, nil, nil, nil, err
	}
	// The request is bound to its conversation: the office the SDK proved
	// the sender speaks for must have published the template, and the
	// template must be the one the request names by hash.
	t, err := a.template(ctx, dev, e.Peer.Org, req.TemplateID, req.Version, req.TemplateHash, false)
	if err != nil {
		return e, nil, nil, nil, err
	}
	return e, &req, dev, t, nil
}

// form(messageID) renders a received form request: its verified
// template's pages and fields, the prefilled values, and the submission
// if this device has made one.
func (a *app) form(args []js.Value) (any, error) {
	ctx := context.Background()
	e, req, dev, t, err := a.formRequest(ctx, args[0].String())
	if err != nil {
		return nil, err
	}
	v := formView{MessageID: e.ID, RequestID: req.RequestID, OrgID: e.Peer.Org, OrgName: e.Org, TemplateID: t.ID, Version: t.Version,
		Hash: t.Hash(), Title: t.Title, Description: t.Description, Prefill: req.Prefill}
	if t.Fee != nil {
		v.FeeCents, v.FeePurpose = t.Fee.AmountCents, t.Fee.Purpose
	}
	for _, p := range t.Layout.Pages {
		pv := pageView{Title: p.Title}
		for _, f := range p.Fields {
			pv.Fields = append(pv.Fields, fieldOf(t, f))
		}
		v.Pages = append(v.Pages, pv)
	}
	answers := []byte(req.Prefill)
	if len(answers) == 0 {
		answers = []byte("{}")
	}
	v.formState = stateOf(t, answers)
	if v.Submitted, err = a.submitted(ctx, dev, e.Peer.Org, req.RequestID); err != nil {
		return nil, err
	}
	return jsonString(v)
}

func (a *app) submitted(ctx context.Context, dev *device, org, request string) (*receiptOfForm, error) {
	b, err := dev.store.Get(nameFormSubmission(org, request))
	if errors.Is(err, mclient.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var s submission
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	if !s.Sent {
		return nil, nil
	}
	res, err := dev.cases(a.base).Get(ctx, s.CaseID) // the citizen may read their own case
	if err != nil {
		return nil, err
	}
	return &receiptOfForm{CaseID: res.Case.ID, SubmissionID: s.SubmissionID, Status: res.Case.Status, DueDate: res.Case.DueDate,
		FeeRequest: res.Case.FeeRequest, At: s.At}, nil
}

func stateOf(t *forms.Template, answers []byte) formState {
	st := formState{Visible: t.Visible(answers), Required: []string{}}
	for _, n := range st.Visible {
		if t.Required(n, answers) {
			st.Required = append(st.Required, n)
		}
	}
	return st
}

// formState(messageID, answersJSON): the fields shown and required for
// these answers, by the template's own rules.
func (a *app) formState(args []js.Value) (any, error) {
	_, _, _, t, err := a.formRequest(context.Background(), args[0].String())
	if err != nil {
		return nil, err
	}
	answers, err := answersArg(args[1].String())
	if err != nil {
		return nil, err
	}
	return jsonString(stateOf(t, answers))
}

func answersArg(s string) ([]byte, error) {
	if len(s) > forms.MaxAnswers {
		return nil, fmt.Errorf("the answers are longer than %d bytes", forms.MaxAnswers)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &obj); err != nil {
		return nil, fmt.Errorf("answers: %w", err)
	}
	return []byte(s), nil
}

// propSchema is the part of a property's JSON Schema the page needs to
// choose a control; Template.Check judges the answer.
type propSchema struct {
	Type             json.RawMessage            `json:"type"`
	Enum             []json.RawMessage          `json:"enum"`
	Const            json.RawMessage            `json:"const"`
	Format           string                     `json:"format"`
	Title            string                     `json:"title"`
	MaxLength        int                        `json:"maxLength"`
	Minimum          *float64                   `json:"minimum"`
	Maximum          *float64                   `json:"maximum"`
	MultipleOf       float64                    `json:"multipleOf"`
	Items            *propSchema                `json:"items"`
	Properties       map[string]json.RawMessage `json:"properties"`
	Required         []string                   `json:"required"`
	MinItems         int                        `json:"minItems"`
	MaxItems         int                        `json:"maxItems"`
	ExclusiveMinimum *float64                   `json:"exclusiveMinimum"`
}

func (p *propSchema) typ() string {
	var s string
	_ = json.Unmarshal(p.Type, &s)
	return s
}

func fieldOf(t *forms.Template, f forms.Field) fieldView {
	v := fieldView{Name: f.Name, Label: f.Label, Help: f.Help}
	if at, ok := t.Attachment(f.Name); ok {
		v.Control, v.Accept, v.MaxBytes = "file", at.MediaTypes, at.MaxBytes
		return v
	}
	var s propSchema
	if json.Unmarshal(t.PropertySchema(f.Name), &s) != nil {
		v.Control = "json"
		return v
	}
	control(&v, &s, true)
	return v
}

// control chooses the input for a schema; nested is false inside a list.
func control(v *fieldView, s *propSchema, top bool) {
	switch {
	case len(s.Enum) > 0:
		v.Control, v.Options = "choice", s.Enum
	case string(s.Const) == "true":
		v.Control = "confirm"
	case s.typ() == "boolean":
		v.Control = "boolean"
	case s.typ() == "string" && s.Format == "date":
		v.Control = "date"
	case s.typ() == "string" && s.Format == "email":
		v.Control, v.MaxLength = "email", s.MaxLength
	case s.typ() == "string":
		v.Control, v.MaxLength = "text", s.MaxLength
		if s.MaxLength > 200 {
			v.Control = "textarea"
		}
	case s.typ() == "integer" || s.typ() == "number":
		v.Control, v.Min, v.Max, v.Step = "number", s.Minimum, s.Maximum, s.MultipleOf
		if v.Min == nil {
			v.Min = s.ExclusiveMinimum
		}
		if v.Step == 0 && s.typ() == "integer" {
			v.Step = 1
		}
	case top && s.typ() == "array" && s.Items != nil && len(s.Items.Enum) > 0:
		v.Control, v.Options, v.MinItems, v.MaxItems = "checks", s.Items.Enum, s.MinItems, s.MaxItems
	case top && s.typ() == "array" && s.Items != nil && s.Items.typ() == "object" && len(s.Items.Properties) > 0:
		v.Control, v.MinItems, v.MaxItems = "list", s.MinItems, s.MaxItems
		// Columns: the required ones in the schema's order, then the rest
		// by name (a JSON object's members have no order).
		names := append([]string(nil), s.Items.Required...)
		var rest []string
		for n := range s.Items.Properties {
			if !contains(names, n) {
				rest = append(rest, n)
			}
		}
		sort.Strings(rest)
		for _, n := range append(names, rest...) {
			var cs propSchema
			col := fieldView{Name: n, Label: forms.Text{DE: n, EN: n}, ColumnRequired: contains(s.Items.Required, n)}
			if json.Unmarshal(s.Items.Properties[n], &cs) != nil {
				col.Control = "json"
			} else {
				if cs.Title != "" {
					col.Label = forms.Text{DE: cs.Title, EN: cs.Title}
				}
				control(&col, &cs, false)
			}
			v.Columns = append(v.Columns, col)
		}
	default:
		v.Control = "json"
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// fieldErrors is the answer of submitForm when the answers do not fit:
// nothing was sent.
type fieldErrors struct {
	Errors []forms.FieldError `json:"errors"`
}

// submitForm(messageID, answersJSON, files) checks the answers with the
// template (Template.Check, as kanal form fill before it sends); if they
// do not fit it sends nothing and returns each field's errors. Otherwise
// it opens the case at kanald (the template reference, never an answer),
// uploads each file encrypted, and sends the answers end to end to the
// office's agents as kanal form fill does; it returns the receipt. files
// is an array of {field, name, type, data: Uint8Array}.
func (a *app) submitForm(args []js.Value) (any, error) {
	ctx := context.Background()
	e, req, dev, t, err := a.formRequest(ctx, args[0].String())
	if err != nil {
		return nil, err
	}
	org := e.Peer.Org
	if r, err := a.submitted(ctx, dev, org, req.RequestID); err != nil {
		return nil, err
	} else if r != nil {
		return nil, fmt.Errorf("this form was submitted already: case %s", r.CaseID)
	}
	raw, err := answersArg(args[1].String())
	if err != nil {
		return nil, err
	}
	type file struct {
		field, name, mime string
		data              []byte
	}
	var files []file
	var infos []forms.AttachmentInfo
	if fs := args[2]; !fs.IsUndefined() && !fs.IsNull() {
		for i := 0; i < fs.Length(); i++ {
			f := fs.Index(i)
			fl := file{field: f.Get("field").String(), name: f.Get("name").String(), mime: f.Get("type").String()}
			if n := f.Get("data").Get("length").Int(); n > kind.MaxAttachment {
				return jsonString(fieldErrors{Errors: []forms.FieldError{{Field: fl.field,
					DE: "Die Datei ist zu groß, um sie zu senden.", EN: "The file is too large to send."}}})
			}
			fl.data = bytesOf(f.Get("data"))
			files = append(files, fl)
			infos = append(infos, forms.AttachmentInfo{Name: fl.field, MediaType: fl.mime, Size: int64(len(fl.data))})
		}
	}
	if errs := t.Check(raw, infos); errs != nil {
		return jsonString(fieldErrors{Errors: errs.Fields})
	}
	// The submission's id is kept before the case is opened: a retry
	// after a lost answer opens the same case, not a second.
	var s submission
	name := nameFormSubmission(org, req.RequestID)
	if b, err := dev.store.Get(name); err == nil {
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, mclient.ErrNotFound) {
		return nil, err
	}
	if s.SubmissionID == "" {
		var rnd [10]byte
		if _, err := rand.Read(rnd[:]); err != nil {
			return nil, err
		}
		s.SubmissionID = "sub_" + hex.EncodeToString(rnd[:])
		if err := a.saveSubmission(dev, name, &s); err != nil {
			return nil, err
		}
	}
	cs, err := dev.cases(a.base).Open(ctx, org, cases.OpenRequest{SubmissionID: s.SubmissionID, TemplateID: t.ID, Version: t.Version, TemplateHash: t.Hash()})
	if err != nil {
		return nil, err
	}
	s.CaseID = cs.ID
	if err := a.saveSubmission(dev, name, &s); err != nil {
		return nil, err
	}
	mc, err := a.client()
	if err != nil {
		return nil, err
	}
	body := &kind.FormSubmissionBody{SubmissionID: s.SubmissionID, CaseID: cs.ID, RequestID: req.RequestID, TemplateID: t.ID,
		Version: t.Version, TemplateHash: t.Hash(), Answers: raw}
	for _, f := range files {
		att, err := mc.UploadAttachment(ctx, f.data, f.mime, f.name)
		if err != nil {
			return nil, err
		}
		body.Attachments = append(body.Attachments, kind.FormFile{Field: f.field, AttachmentBody: *att})
	}
	m, err := kind.New(mclient.NewMessageID(), time.Now(), body)
	if err != nil {
		return nil, err
	}
	if _, err := mc.Send(ctx, mclient.Peer{OrgID: org}, m); err != nil {
		return nil, fmt.Errorf("case %s is open, but sending the answers failed (submit again): %w", cs.ID, err)
	}
	s.Sent, s.At = true, time.Now().UTC()
	if err := a.saveSubmission(dev, name, &s); err != nil {
		return nil, err
	}
	return jsonString(receiptOfForm{CaseID: cs.ID, SubmissionID: s.SubmissionID, Status: cs.Status, DueDate: cs.DueDate, FeeRequest: cs.FeeRequest, At: s.At})
}

func (a *app) saveSubmission(dev *device, name string, s *submission) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return dev.store.Put(name, b)
}

// ---- the office's agent: the case inbox ----

// caseRecord is what an agent's device holds of a case: the submission
// as it arrived end to end and its check against the template, as kanal
// cases keeps it.
type caseRecord struct {
	CaseID       string             `json:"case_id"`
	Org          string             `json:"org"`
	Citizen      string             `json:"citizen"`
	SubmissionID string             `json:"submission_id"`
	TemplateID   string             `json:"template_id"`
	Version      string             `json:"version"`
	Hash         string             `json:"hash"`
	Answers      json.RawMessage    `json:"answers"`
	Files        []kind.FormFile    `json:"files,omitempty"`
	Checked      bool               `json:"checked,omitempty"`
	Refused      []forms.FieldError `json:"refused,omitempty"`
	Problem      string             `json:"problem,omitempty"`
}

// takeForm records a form submission that reached this agent's device:
// the template is fetched and verified as the citizen's was (a version
// withdrawn since is still read), and the answers checked with
// Template.Check, as kanal cases does on receipt. A second submission
// claiming a case is ignored.
func (a *app) takeForm(in *mclient.Incoming) error {
	b, ok := in.Message.Body.(*kind.FormSubmissionBody)
	if !ok || in.FromServer || in.Reply.OrgID == "" || in.Reply.AccountID == "" || in.SenderAccount != in.Reply.AccountID {
		return nil // not a citizen's submission to an office (a copy of one's own, for one)
	}
	dev, err := a.device()
	if err != nil {
		return err
	}
	if old, err := dev.store.Get(nameCaseRecord(b.CaseID)); err == nil {
		var r caseRecord
		if json.Unmarshal(old, &r) == nil && r.SubmissionID != "" && r.SubmissionID != b.SubmissionID {
			return nil
		}
	}
	r := caseRecord{CaseID: b.CaseID, Org: in.Reply.OrgID, Citizen: in.SenderAccount, SubmissionID: b.SubmissionID,
		TemplateID: b.TemplateID, Version: b.Version, Hash: b.TemplateHash, Answers: b.Answers, Files: b.Attachments}
	if t, err := a.template(context.Background(), dev, r.Org, b.TemplateID, b.Version, b.TemplateHash, true); err != nil {
		r.Problem = err.Error()
	} else {
		var infos []forms.AttachmentInfo
		for _, f := range b.Attachments {
			infos = append(infos, forms.AttachmentInfo{Name: f.Field, MediaType: f.MIME, Size: f.AttachmentBody.PlainSize()})
		}
		if errs := t.Check(b.Answers, infos); errs != nil {
			r.Refused = errs.Fields
		} else {
			r.Checked = true
		}
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return dev.store.Put(nameCaseRecord(b.CaseID), raw)
}

func (a *app) caseRecord(dev *device, id string) (*caseRecord, error) {
	b, err := dev.store.Get(nameCaseRecord(id))
	if errors.Is(err, mclient.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var r caseRecord
	return &r, json.Unmarshal(b, &r)
}

// answerState says whether this device holds the case's answers and
// whether they fit the form and kanald's record of the case, in kanal
// cases' words: checked, refused, mismatch, missing.
func answerState(cs *cases.Case, r *caseRecord) string {
	switch {
	case r == nil || r.SubmissionID == "":
		return "missing"
	case r.SubmissionID != cs.SubmissionID || r.Hash != cs.TemplateHash || r.Citizen != cs.Citizen || r.Org != cs.OrgID ||
		r.TemplateID != cs.TemplateID || r.Version != cs.Version:
		return "mismatch"
	case r.Checked:
		return "checked"
	default:
		return "refused"
	}
}

type caseRow struct {
	cases.Case
	CitizenName string `json:"citizen_name,omitempty"`
	Answers     string `json:"answers"` // answerState
}

// casesOf(org) lists the office's case inbox, newest first, as kanal
// cases does: kanald's records, and whether this device holds each
// case's answers and they fit.
func (a *app) casesOf(args []js.Value) (any, error) {
	ctx := context.Background()
	org := args[0].String()
	dev, err := a.device()
	if err != nil {
		return nil, err
	}
	mc, err := a.client()
	if err != nil {
		return nil, err
	}
	api := dev.cases(a.base)
	rows := []caseRow{}
	f := cases.Filter{}
	for {
		page, err := api.List(ctx, org, f)
		if err != nil {
			return nil, err
		}
		for _, cs := range page.Cases {
			r, err := a.caseRecord(dev, cs.ID)
			if err != nil {
				return nil, err
			}
			row := caseRow{Case: cs, Answers: answerState(&cs, r)}
			if p, err := mc.Profile(cs.Citizen); err == nil && p != nil {
				row.CitizenName = p.DisplayName
			}
			rows = append(rows, row)
		}
		if page.Next == "" || len(rows) >= 1000 {
			break
		}
		f.After = page.Next
	}
	return jsonString(rows)
}

type answerView struct {
	Name  string          `json:"name"`
	Label forms.Text      `json:"label"`
	Value json.RawMessage `json:"value,omitempty"`
	File  *fileView       `json:"file,omitempty"`
}

type fileView struct {
	Name string `json:"name"`
	MIME string `json:"mime"`
	Size int64  `json:"size"`
}

type caseView struct {
	Case        cases.Case         `json:"case"`
	Events      []cases.Event      `json:"events"`
	CitizenName string             `json:"citizen_name,omitempty"`
	Title       *forms.Text        `json:"title,omitempty"`
	Answers     string             `json:"answers"` // answerState
	Fields      []answerView       `json:"fields"`
	Refused     []forms.FieldError `json:"refused,omitempty"`
	Problem     string             `json:"problem,omitempty"`
	Next        []string           `json:"next"`
}

// caseOf(id) shows one case: kanald's record and history, and the
// answers as they arrived end to end on this device, in the template's
// layout order with its labels (the template verified again).
func (a *app) caseOf(args []js.Value) (any, error) {
	ctx := context.Background()
	dev, err := a.device()
	if err != nil {
		return nil, err
	}
	res, err := dev.cases(a.base).Get(ctx, args[0].String())
	if err != nil {
		return nil, err
	}
	cs := res.Case
	v := caseView{Case: *cs, Events: res.Events, Next: cases.NextStatuses(cs.Status), Fields: []answerView{}}
	if mc, err := a.client(); err == nil {
		if p, err := mc.Profile(cs.Citizen); err == nil && p != nil {
			v.CitizenName = p.DisplayName
		}
	}
	r, err := a.caseRecord(dev, cs.ID)
	if err != nil {
		return nil, err
	}
	v.Answers = answerState(cs, r)
	if v.Answers == "missing" || v.Answers == "mismatch" {
		return jsonString(v)
	}
	v.Refused, v.Problem = r.Refused, r.Problem
	t, err := a.template(ctx, dev, r.Org, r.TemplateID, r.Version, r.Hash, true)
	if err != nil {
		v.Problem = err.Error()
		return jsonString(v)
	}
	v.Title = &t.Title
	var answers map[string]json.RawMessage
	if err := json.Unmarshal(r.Answers, &answers); err != nil {
		return nil, err
	}
	for _, n := range t.Fields() {
		f, _ := t.Field(n)
		if val, ok := answers[n]; ok {
			v.Fields = append(v.Fields, answerView{Name: n, Label: f.Label, Value: val})
		}
		for _, file := range r.Files {
			if file.Field == n {
				v.Fields = append(v.Fields, answerView{Name: n, Label: f.Label, File: &fileView{Name: file.Name, MIME: file.MIME, Size: file.AttachmentBody.PlainSize()}})
			}
		}
	}
	return jsonString(v)
}

// setCaseStatus(id, status, message) moves a case to another status, as
// kanal case status does; with a message, the text goes to the citizen
// as the office, end to end. It returns the case as caseOf does.
func (a *app) setCaseStatus(args []js.Value) (any, error) {
	ctx := context.Background()
	id, status, message := args[0].String(), args[1].String(), args[2].String()
	if !cases.ValidStatus(status) {
		return nil, errors.New("not a case status")
	}
	dev, err := a.device()
	if err != nil {
		return nil, err
	}
	cs, err := dev.cases(a.base).SetStatus(ctx, id, status)
	if err != nil {
		return nil, err
	}
	if message != "" {
		mc, err := a.client()
		if err != nil {
			return nil, err
		}
		p := peer{Org: cs.OrgID, Account: cs.Citizen}
		m, err := kind.New(mclient.NewMessageID(), time.Now(), &kind.TextBody{Text: message})
		if err != nil {
			return nil, err
		}
		if _, err := mc.Send(ctx, p.sdk(), m); err != nil {
			return nil, fmt.Errorf("the status is set, the message not sent: %w", err)
		}
		conv, _ := mc.ConversationID(p.sdk())
		if err := a.keep(entry{ID: m.ID, Conv: conv, Peer: p, From: "me", Kind: string(m.Kind), Text: message,
			At: m.SentAt.Format(time.RFC3339), State: "sent"}); err != nil {
			return nil, err
		}
	}
	return a.caseOf(args[:1])
}

// assignCase(id) assigns a case to this agent, as kanal case assign does.
func (a *app) assignCase(args []js.Value) (any, error) {
	dev, err := a.device()
	if err != nil {
		return nil, err
	}
	if _, err := dev.cases(a.base).Assign(context.Background(), args[0].String(), dev.st.AccountID); err != nil {
		return nil, err
	}
	return a.caseOf(args[:1])
}
