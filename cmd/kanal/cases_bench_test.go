package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	mclient "github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/miniapps/forms"
)

// template40 is a 40-field form: four pages of ten text, pattern, date
// and choice fields.
func template40(b *testing.B) (*forms.Template, []byte) {
	props := map[string]any{}
	var required []string
	var pages []any
	answers := map[string]any{}
	for p := range 4 {
		var fields []any
		for i := range 10 {
			name := fmt.Sprintf("f%02d", p*10+i)
			switch i % 4 {
			case 0:
				props[name] = map[string]any{"type": "string", "minLength": 1, "maxLength": 100}
				answers[name] = "Erika Mustermann " + name
			case 1:
				props[name] = map[string]any{"type": "string", "pattern": "^[0-9]{5}$"}
				answers[name] = "64283"
			case 2:
				props[name] = map[string]any{"type": "string", "format": "date"}
				answers[name] = "2026-11-01"
			default:
				props[name] = map[string]any{"enum": []string{"ja", "nein", "vielleicht"}}
				answers[name] = "ja"
			}
			required = append(required, name)
			fields = append(fields, map[string]any{"name": name, "label": map[string]string{"de": "Feld " + name, "en": "Field " + name}})
		}
		pages = append(pages, map[string]any{"title": map[string]string{"de": fmt.Sprint("Seite ", p+1), "en": fmt.Sprint("Page ", p+1)}, "fields": fields})
	}
	tpl := map[string]any{
		"format": 1, "id": "bench-forty", "version": "1.0.0", "org": map[string]string{"id": "org_bench", "name": "Bürgeramt"},
		"title":  map[string]string{"de": "Vierzig Felder", "en": "Forty fields"},
		"schema": map[string]any{"$schema": forms.SchemaDialect, "type": "object", "additionalProperties": false, "required": required, "properties": props},
		"layout": map[string]any{"pages": pages}, "statuses": forms.DefaultStatuses(), "processing_days": 14,
	}
	raw, _ := json.Marshal(tpl)
	t, err := forms.Decode(raw)
	if err != nil {
		b.Fatal(err)
	}
	ans, _ := json.Marshal(answers)
	if errs := t.Check(ans, nil); errs != nil {
		b.Fatal(errs)
	}
	return t, ans
}

// BenchmarkSubmit40 is what a citizen's device does to submit a filled
// 40-field form to an office with two agent devices: check the answers
// against the template, encode the form.submission, encrypt it for each
// agent device (and the citizen's own other device) and store it through
// a real kanald (SQLite, embedded NATS). Registering the case is one more
// small POST and is not included.
func BenchmarkSubmit40(b *testing.B) {
	ctx := context.Background()
	srv := kanaldtest.Start(b, bin.kanald)
	t, answers := template40(b)
	enrol := func(email string, n int) []*kanaldtest.Device {
		ic, v := srv.Verify(b, email)
		const pw = "correct horse battery staple 42"
		if err := ic.WithToken(v.SetupToken).SetPassword(ctx, pw, ""); err != nil {
			b.Fatal(err)
		}
		var out []*kanaldtest.Device
		enroller := ic.WithToken(v.SetupToken)
		for i := range n {
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			out = append(out, srv.Enrol(b, v.AccountID, enroller, fmt.Sprint("device ", i+1), key, pw))
			enroller = out[0].Identity
		}
		return out
	}
	citizen := enrol("clara@example.org", 2)
	agents := []*kanaldtest.Device{enrol("anna@amt.example", 1)[0], enrol("ben@amt.example", 1)[0]}
	op := idclient.New(srv.URL, nil).WithToken(srv.OperatorToken(b))
	org, err := op.CreateOrg(ctx, "Bürgeramt", "office")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := op.VerifyOrg(ctx, org.OrgID); err != nil {
		b.Fatal(err)
	}
	for _, a := range agents {
		if _, err := op.AddMember(ctx, org.OrgID, a.AccountID, "agent"); err != nil {
			b.Fatal(err)
		}
	}
	var sdks []*mclient.Client
	for _, d := range append(append([]*kanaldtest.Device{}, citizen...), agents...) {
		c := d.SDK(b, srv.URL, mclient.NewMemoryStore())
		if _, err := c.Publish(ctx); err != nil {
			b.Fatal(err)
		}
		sdks = append(sdks, c)
	}
	sender := sdks[0]
	hash := "sha256:" + strings.Repeat("a", 64)
	submit := func(i int) {
		if errs := t.Check(answers, nil); errs != nil {
			b.Fatal(errs)
		}
		m, err := kind.New(mclient.NewMessageID(), time.Now(), &kind.FormSubmissionBody{SubmissionID: fmt.Sprint("sub_", i),
			CaseID: fmt.Sprint("case_", i), TemplateID: t.ID, Version: t.Version, TemplateHash: hash, Answers: answers})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := sender.Send(ctx, mclient.Peer{OrgID: org.OrgID}, m); err != nil {
			b.Fatal(err)
		}
	}
	submit(-1) // sessions with every device are set up once, as on a phone
	i := 0
	for b.Loop() {
		submit(i)
		i++
	}
	b.ReportMetric(float64(len(answers)), "answer-bytes")
}
