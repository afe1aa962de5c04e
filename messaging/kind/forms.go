package kind

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Forms in the chat. An office's agent sends a form.request naming a
// published template by id, version and hash; the citizen's client fetches
// the template from the catalogue, checks its signature and that its hash
// is the one named here, and sends the answers back as a form.submission,
// end to end to the organisation's agents. The answers' shape is checked
// here; whether they satisfy the template's schema is checked by both
// clients against the template itself (miniapps/forms).

var semverShape = regexp.MustCompile(`^(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})$`)

// FormRequestBody asks a citizen to fill in a form from a published
// template.
type FormRequestBody struct {
	RequestID    string `json:"request_id"`
	TemplateID   string `json:"template_id"`
	Version      string `json:"version"`       // the template's semantic version, MAJOR.MINOR.PATCH
	TemplateHash string `json:"template_hash"` // the template version's hash, "sha256:" and 64 lower-case hex digits (miniapps/forms)
	Title        string `json:"title"`
	// Prefill holds values the office already knows, as a JSON object
	// keyed by field; the citizen may change them.
	Prefill json.RawMessage `json:"prefill,omitempty"`
}

func (*FormRequestBody) Kind() Kind { return FormRequest }
func (b *FormRequestBody) Validate() error {
	if err := checkTemplateRef(FormRequest, b.TemplateID, b.Version, b.TemplateHash); err != nil {
		return err
	}
	switch {
	case checkID("request_id", b.RequestID) != nil:
		return invalid(FormRequest, "%v", checkID("request_id", b.RequestID))
	case checkText("title", b.Title, MaxName, true) != nil:
		return invalid(FormRequest, "%v", checkText("title", b.Title, MaxName, true))
	}
	if len(b.Prefill) > 0 {
		if err := checkObject("prefill", b.Prefill, MaxFormAnswers); err != nil {
			return invalid(FormRequest, "%v", err)
		}
	}
	return nil
}

// FormSubmissionBody carries a citizen's answers to a form. CaseID is the
// case the submission opened at the organisation (the server's id, which
// the citizen's client received when it registered the submission).
type FormSubmissionBody struct {
	SubmissionID string          `json:"submission_id"`
	CaseID       string          `json:"case_id"`
	RequestID    string          `json:"request_id,omitempty"` // the form.request it answers, if any
	TemplateID   string          `json:"template_id"`
	Version      string          `json:"version"`
	TemplateHash string          `json:"template_hash"`
	Answers      json.RawMessage `json:"answers"` // a JSON object keyed by field
	Attachments  []FormFile      `json:"attachments,omitempty"`
}

// FormFile is a file given for an attachment field: an encrypted blob as
// an attachment message names it, and the field it answers.
type FormFile struct {
	Field string `json:"field"`
	AttachmentBody
}

func (*FormSubmissionBody) Kind() Kind { return FormSubmission }
func (b *FormSubmissionBody) Validate() error {
	if err := checkTemplateRef(FormSubmission, b.TemplateID, b.Version, b.TemplateHash); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{{"submission_id", b.SubmissionID}, {"case_id", b.CaseID}} {
		if err := checkID(f.name, f.v); err != nil {
			return invalid(FormSubmission, "%v", err)
		}
	}
	if b.RequestID != "" {
		if err := checkID("request_id", b.RequestID); err != nil {
			return invalid(FormSubmission, "%v", err)
		}
	}
	if err := checkObject("answers", b.Answers, MaxFormAnswers); err != nil {
		return invalid(FormSubmission, "%v", err)
	}
	if len(b.Attachments) > MaxFormFiles {
		return invalid(FormSubmission, "at most %d attachments", MaxFormFiles)
	}
	for _, f := range b.Attachments {
		if err := checkID("attachment field", f.Field); err != nil {
			return invalid(FormSubmission, "%v", err)
		}
		if err := f.AttachmentBody.Validate(); err != nil {
			return invalid(FormSubmission, "attachment %s: %v", f.Field, err)
		}
	}
	return nil
}

// The statuses of a case, in the order a case usually goes through them.
const (
	CaseReceived         = "received"
	CaseInProgress       = "in_progress"
	CaseNeedsInformation = "needs_information"
	CaseDecided          = "decided"
)

// ValidCaseStatus reports whether s is a case status.
func ValidCaseStatus(s string) bool {
	switch s {
	case CaseReceived, CaseInProgress, CaseNeedsInformation, CaseDecided:
		return true
	}
	return false
}

// CaseStatusBody is the server's notice that a case changed: opened
// (received, the citizen's receipt), assigned, or moved to another status.
// It carries only what the server holds about the case; never an answer.
type CaseStatusBody struct {
	CaseID       string `json:"case_id"`
	SubmissionID string `json:"submission_id"`
	TemplateID   string `json:"template_id"`
	Status       string `json:"status"`
	DueDate      string `json:"due_date"` // YYYY-MM-DD
	Assignee     string `json:"assignee,omitempty"`
	// Seq counts the case's changes from 1 (opened), so a client shows
	// them in order and knows the newest.
	Seq int `json:"seq"`
}

func (*CaseStatusBody) Kind() Kind { return CaseStatus }
func (b *CaseStatusBody) Validate() error {
	for _, f := range []struct{ name, v string }{{"case_id", b.CaseID}, {"submission_id", b.SubmissionID}, {"template_id", b.TemplateID}} {
		if err := checkID(f.name, f.v); err != nil {
			return invalid(CaseStatus, "%v", err)
		}
	}
	if !ValidCaseStatus(b.Status) {
		return invalid(CaseStatus, "status must be received, in_progress, needs_information or decided")
	}
	if _, err := time.Parse(time.DateOnly, b.DueDate); err != nil {
		return invalid(CaseStatus, "due_date must be YYYY-MM-DD")
	}
	if b.Assignee != "" {
		if err := checkID("assignee", b.Assignee); err != nil {
			return invalid(CaseStatus, "%v", err)
		}
	}
	if b.Seq < 1 {
		return invalid(CaseStatus, "seq must be at least 1")
	}
	return nil
}

// CaseNoteBody is an internal note on a case, written by one of the
// organisation's agents for the others.
type CaseNoteBody struct {
	CaseID string `json:"case_id"`
	Text   string `json:"text"`
}

func (*CaseNoteBody) Kind() Kind { return CaseNote }
func (b *CaseNoteBody) Validate() error {
	if err := checkID("case_id", b.CaseID); err != nil {
		return invalid(CaseNote, "%v", err)
	}
	if err := checkText("text", b.Text, MaxText, true); err != nil {
		return invalid(CaseNote, "%v", err)
	}
	return nil
}

func checkTemplateRef(k Kind, id, version, hash string) error {
	switch {
	case checkID("template_id", id) != nil:
		return invalid(k, "%v", checkID("template_id", id))
	case !semverShape.MatchString(version):
		return invalid(k, "version must be a semantic version MAJOR.MINOR.PATCH")
	case !strings.HasPrefix(hash, "sha256:") || checkSHA256("template_hash", strings.TrimPrefix(hash, "sha256:")) != nil:
		return invalid(k, "template_hash must be sha256: and 64 lower-case hex digits")
	}
	return nil
}

// checkObject checks that raw is one JSON object of at most max bytes.
func checkObject(field string, raw json.RawMessage, max int) error {
	if len(raw) == 0 {
		return fmt.Errorf("%s is required", field)
	}
	if len(raw) > max {
		return fmt.Errorf("%s is over %d bytes", field, max)
	}
	var obj map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return fmt.Errorf("%s must be a JSON object", field)
	}
	if dec.More() {
		return fmt.Errorf("%s: data after the object", field)
	}
	for k := range obj {
		if err := checkID(field+" key", k); err != nil {
			return err
		}
	}
	return nil
}
