package kind_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/messaging/kind"
)

var when = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

const (
	key32  = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
)

// valid has one good body per kind; TestEveryKindRoundTrips checks it
// covers the whole registry.
var valid = []kind.Body{
	&kind.TextBody{Text: "Guten Tag, mein Antrag 4711?"},
	&kind.AttachmentBody{BlobID: "blob_1", Key: key32, SHA256: sha256, Size: 1024, MIME: "application/pdf", Name: "Antrag.pdf"},
	&kind.ReceiptBody{Status: "read", IDs: []string{"m1", "m2"}},
	&kind.PollBody{Op: "open", PollID: "p1", Question: "Termin?", Options: []string{"Mo", "Di"}},
	&kind.SurveyInviteBody{SurveyID: "s1", Title: "Radwege 2027", ClosesAt: when.Add(720 * time.Hour)},
	&kind.OfferBody{OfferID: "o1", JWS: "eyJhbGciOiJFUzI1NiJ9.eyJ4IjoxfQ.c2ln"},
	&kind.ContractBody{ContractID: "c1", JWS: "eyJhbGciOiJFUzI1NiJ9.eyJ4IjoxfQ.c2ln"},
	&kind.PaymentRequestBody{RequestID: "r1", AmountCents: 1250, Currency: "EUR", Creditor: "Bürgeramt Musterstadt", IBAN: "DE89370400440532013000", Reference: "RF18539007547034", DueDate: "2026-12-31",
		Purpose: "Anwohnerparkausweis 2027", BIC: "COBADEFFXXX", ContractID: "c1"},
	&kind.PaymentStatusBody{RequestID: "r1", Status: "paid", AmountCents: 1250},
	&kind.FormRequestBody{RequestID: "f1", TemplateID: "anmeldung", Version: "3.0.1", TemplateHash: "sha256:" + sha256, Title: "Anmeldung einer Wohnung",
		Prefill: json.RawMessage(`{"name":"Erika Mustermann"}`)},
	&kind.FormSubmissionBody{SubmissionID: "sub1", CaseID: "case_1", RequestID: "f1", TemplateID: "anmeldung", Version: "3.0.1", TemplateHash: "sha256:" + sha256,
		Answers:     json.RawMessage(`{"name":"Erika Mustermann","persons":2}`),
		Attachments: []kind.FormFile{{Field: "mietvertrag", AttachmentBody: kind.AttachmentBody{BlobID: "blob_1", Key: key32, SHA256: sha256, Size: 1024, MIME: "application/pdf"}}}},
	&kind.CaseStatusBody{CaseID: "case_1", SubmissionID: "sub1", TemplateID: "anmeldung", Status: "needs_information", DueDate: "2026-12-31", Assignee: "acc_1", Seq: 3},
	&kind.AppPostBody{AppID: "bakery", AppName: "Bäckerei Korn: Bestellung", OrgID: "org_1", Text: "Ihre Bestellung ist bestätigt."},
	&kind.CaseNoteBody{CaseID: "case_1", Text: "Mietvertrag fehlt, nachgefragt."},
	&kind.DocumentShareBody{DocumentID: "d1", Version: 1, Name: "Bescheid.pdf", Key: key32, SHA256: sha256},
	&kind.DocumentWithdrawnBody{ShareID: "vs_1", DocumentID: "d1", Version: 1, Owner: "acc_1"},
	&kind.GroupChangeBody{GroupID: "g_1", Op: "added", AccountID: "acc_2", By: "acc_1", Role: "member"},
	&kind.GroupNameBody{GroupID: "g_0123456789abcdef0123456789abcdef", Name: "Elternbeirat Klasse 3b"},
	&kind.DeviceChangeBody{AccountID: "acc_1", DeviceID: "dev_1", Op: "key"},
	&kind.OrgChangeBody{OrgID: "org_1", Op: "erased", AccountID: "acc_1"},
	&kind.ProfileBody{AccountID: "acc_1", Version: 2, UpdatedAt: when, DisplayName: "Frau Schmidt",
		Avatar: &kind.ProfileAvatar{MIME: "image/png", Data: "iVBORw0KGgo="}},
	&kind.VerifiedNameBody{OrgID: "org_1", Attestation: &kind.VerifiedNameAttestation{Statement: []byte("kanal verified-name v1\n"),
		Signature: make([]byte, 64), Notary: []byte{0x30}}},
}

func TestEveryKindRoundTrips(t *testing.T) {
	covered := map[kind.Kind]bool{}
	for _, b := range valid {
		m, err := kind.New("msg_1", when, b)
		if err != nil {
			t.Fatalf("%s: %v", b.Kind(), err)
		}
		data, err := m.Marshal()
		if err != nil {
			t.Fatalf("%s: marshal: %v", b.Kind(), err)
		}
		got, err := kind.Unmarshal(data)
		if err != nil {
			t.Fatalf("%s: unmarshal: %v", b.Kind(), err)
		}
		again, _ := got.Marshal()
		if string(again) != string(data) {
			t.Fatalf("%s: not canonical:\n%s\n%s", b.Kind(), data, again)
		}
		if _, err := kind.ClassOf(b.Kind()); err != nil {
			t.Fatal(err)
		}
		covered[b.Kind()] = true
	}
	for _, k := range kind.Kinds() {
		if !covered[k] {
			t.Errorf("kind %s has no valid example in this test", k)
		}
	}
	// docs/design.md's twelve kinds, group.change and device.change, which
	// only the server writes (membership changes every member sees, key
	// changes every device of the account sees), profile, and the two
	// kinds of a form's case (case.status, case.note), app.post, and
	// document.withdrawn, which the server writes when a vault share ends,
	// identity.verified-name, and org.change, which the server writes when
	// a member's account is erased, and group.name, which a member sends.
	if len(kind.Kinds()) != 22 {
		t.Errorf("%d kinds registered, want docs/design.md's 12, group.change, device.change, profile, case.status, case.note, app.post, document.withdrawn, identity.verified-name, org.change and group.name", len(kind.Kinds()))
	}
}

func TestClasses(t *testing.T) {
	for k, want := range map[kind.Kind]kind.Class{
		kind.Text: kind.ClassMessage, kind.Receipt: kind.ClassReceipt,
		kind.Offer: kind.ClassTransaction, kind.PaymentRequest: kind.ClassTransaction,
	} {
		if got, _ := kind.ClassOf(k); got != want {
			t.Errorf("%s: class %s, want %s", k, got, want)
		}
	}
	if _, err := kind.ClassOf("sticker"); !errors.Is(err, kind.ErrUnknownKind) {
		t.Fatalf("unknown kind: %v", err)
	}
}

func TestInvalidBodies(t *testing.T) {
	bad := map[string]kind.Body{
		"empty text":               &kind.TextBody{Text: "  "},
		"control chars":            &kind.TextBody{Text: "a\x00b"},
		"long text":                &kind.TextBody{Text: strings.Repeat("x", kind.MaxText+1)},
		"short attachment key":     &kind.AttachmentBody{BlobID: "b", Key: "AAEC", SHA256: sha256, Size: 1, MIME: "image/png"},
		"upper-case hash":          &kind.AttachmentBody{BlobID: "b", Key: key32, SHA256: strings.ToUpper(sha256), Size: 1, MIME: "image/png"},
		"huge attachment":          &kind.AttachmentBody{BlobID: "b", Key: key32, SHA256: sha256, Size: kind.MaxAttachment + 1, MIME: "image/png"},
		"bad mime":                 &kind.AttachmentBody{BlobID: "b", Key: key32, SHA256: sha256, Size: 1, MIME: "png"},
		"receipt status":           &kind.ReceiptBody{Status: "seen", IDs: []string{"m"}},
		"receipt without ids":      &kind.ReceiptBody{Status: "read"},
		"poll one option":          &kind.PollBody{Op: "open", PollID: "p", Question: "q", Options: []string{"a"}},
		"poll duplicate options":   &kind.PollBody{Op: "open", PollID: "p", Question: "q", Options: []string{"a", "a "}},
		"vote repeated choice":     &kind.PollBody{Op: "vote", PollID: "p", Choices: []int{1, 1}},
		"vote negative choice":     &kind.PollBody{Op: "vote", PollID: "p", Choices: []int{-1}},
		"poll bad op":              &kind.PollBody{Op: "rig", PollID: "p"},
		"group change bad op":      &kind.GroupChangeBody{GroupID: "g", Op: "merge", AccountID: "a", By: "b"},
		"group removal with role":  &kind.GroupChangeBody{GroupID: "g", Op: "removed", AccountID: "a", By: "b", Role: "admin"},
		"group add without role":   &kind.GroupChangeBody{GroupID: "g", Op: "added", AccountID: "a", By: "b"},
		"device change bad op":     &kind.DeviceChangeBody{AccountID: "a", DeviceID: "d", Op: "revoked"},
		"org change bad op":        &kind.OrgChangeBody{OrgID: "o", AccountID: "a", Op: "left"},
		"group name empty":         &kind.GroupNameBody{GroupID: "g_1", Name: " "},
		"group name two lines":     &kind.GroupNameBody{GroupID: "g_1", Name: "Eltern\nbeirat"},
		"group name too long":      &kind.GroupNameBody{GroupID: "g_1", Name: strings.Repeat("ä", kind.MaxName+1)},
		"group name bad group":     &kind.GroupNameBody{GroupID: "g 1", Name: "Eltern"},
		"org change no account":    &kind.OrgChangeBody{OrgID: "o", Op: "erased"},
		"org change bad org":       &kind.OrgChangeBody{OrgID: "o 1", AccountID: "a", Op: "erased"},
		"device change no device":  &kind.DeviceChangeBody{AccountID: "a", Op: "key"},
		"verified name, no org":    &kind.VerifiedNameBody{OrgID: "acc_1", Attestation: &kind.VerifiedNameAttestation{Statement: []byte("s"), Signature: make([]byte, 64), Notary: []byte{1}}},
		"verified name, none":      &kind.VerifiedNameBody{OrgID: "org_1"},
		"verified name, both":      &kind.VerifiedNameBody{OrgID: "org_1", Withdrawn: true, Attestation: &kind.VerifiedNameAttestation{Statement: []byte("s"), Signature: make([]byte, 64), Notary: []byte{1}}},
		"verified name, short sig": &kind.VerifiedNameBody{OrgID: "org_1", Attestation: &kind.VerifiedNameAttestation{Statement: []byte("s"), Signature: make([]byte, 63), Notary: []byte{1}}},
		"verified name, long":      &kind.VerifiedNameBody{OrgID: "org_1", Attestation: &kind.VerifiedNameAttestation{Statement: make([]byte, 1025), Signature: make([]byte, 64), Notary: []byte{1}}},
		"invite without close":     &kind.SurveyInviteBody{SurveyID: "s", Title: "t"},
		"offer not a JWS":          &kind.OfferBody{OfferID: "o", JWS: "hello"},
		"negative amount":          &kind.PaymentRequestBody{RequestID: "r", AmountCents: -5, Currency: "EUR", Creditor: "c", IBAN: "DE89370400440532013000", Reference: "x", DueDate: "2026-12-31"},
		"dollars":                  &kind.PaymentRequestBody{RequestID: "r", AmountCents: 5, Currency: "USD", Creditor: "c", IBAN: "DE89370400440532013000", Reference: "x", DueDate: "2026-12-31"},
		"iban with spaces":         &kind.PaymentRequestBody{RequestID: "r", AmountCents: 5, Currency: "EUR", Creditor: "c", IBAN: "DE89 3704 0044 0532 0130 00", Reference: "x", DueDate: "2026-12-31"},
		"bad bic":                  &kind.PaymentRequestBody{RequestID: "r", AmountCents: 5, Currency: "EUR", Creditor: "c", IBAN: "DE89370400440532013000", Reference: "x", DueDate: "2026-12-31", BIC: "cobadeff"},
		"long purpose":             &kind.PaymentRequestBody{RequestID: "r", AmountCents: 5, Currency: "EUR", Creditor: "c", IBAN: "DE89370400440532013000", Reference: "x", DueDate: "2026-12-31", Purpose: strings.Repeat("x", 141)},
		"bad due date":             &kind.PaymentRequestBody{RequestID: "r", AmountCents: 5, Currency: "EUR", Creditor: "c", IBAN: "DE89370400440532013000", Reference: "x", DueDate: "31.12.2026"},
		"creditor too long":        &kind.PaymentRequestBody{RequestID: "r", AmountCents: 5, Currency: "EUR", Creditor: strings.Repeat("c", 71), IBAN: "DE89370400440532013000", Reference: "x", DueDate: "2026-12-31"},
		"unknown payment status":   &kind.PaymentStatusBody{RequestID: "r", Status: "stolen"},
		"form version not semver":  &kind.FormRequestBody{RequestID: "f", TemplateID: "t", Version: "3", TemplateHash: "sha256:" + sha256, Title: "x"},
		"form without hash":        &kind.FormRequestBody{RequestID: "f", TemplateID: "t", Version: "1.0.0", Title: "x"},
		"hash without prefix":      &kind.FormRequestBody{RequestID: "f", TemplateID: "t", Version: "1.0.0", TemplateHash: sha256, Title: "x"},
		"prefill not an object":    &kind.FormRequestBody{RequestID: "f", TemplateID: "t", Version: "1.0.0", TemplateHash: "sha256:" + sha256, Title: "x", Prefill: json.RawMessage(`[1]`)},
		"submission without data":  &kind.FormSubmissionBody{SubmissionID: "s", CaseID: "c", TemplateID: "t", Version: "1.0.0", TemplateHash: "sha256:" + sha256},
		"answers null":             &kind.FormSubmissionBody{SubmissionID: "s", CaseID: "c", TemplateID: "t", Version: "1.0.0", TemplateHash: "sha256:" + sha256, Answers: json.RawMessage(`null`)},
		"answers bad key":          &kind.FormSubmissionBody{SubmissionID: "s", CaseID: "c", TemplateID: "t", Version: "1.0.0", TemplateHash: "sha256:" + sha256, Answers: json.RawMessage(`{"a b":1}`)},
		"answers too big":          &kind.FormSubmissionBody{SubmissionID: "s", CaseID: "c", TemplateID: "t", Version: "1.0.0", TemplateHash: "sha256:" + sha256, Answers: json.RawMessage(`{"a":"` + strings.Repeat("x", 33<<10) + `"}`)},
		"attachment without key":   &kind.FormSubmissionBody{SubmissionID: "s", CaseID: "c", TemplateID: "t", Version: "1.0.0", TemplateHash: "sha256:" + sha256, Answers: json.RawMessage(`{}`), Attachments: []kind.FormFile{{Field: "f", AttachmentBody: kind.AttachmentBody{BlobID: "b", SHA256: sha256, Size: 1, MIME: "image/png"}}}},
		"case status unknown":      &kind.CaseStatusBody{CaseID: "c", SubmissionID: "s", TemplateID: "t", Status: "closed", DueDate: "2026-12-31", Seq: 1},
		"app post empty text":      &kind.AppPostBody{AppID: "bakery", AppName: "B", OrgID: "o", Text: " "},
		"case status no seq":       &kind.CaseStatusBody{CaseID: "c", SubmissionID: "s", TemplateID: "t", Status: "received", DueDate: "2026-12-31"},
		"empty note":               &kind.CaseNoteBody{CaseID: "c", Text: " "},
		"document without key":     &kind.DocumentShareBody{DocumentID: "d", Version: 1, Name: "n", SHA256: sha256},
	}
	for name, b := range bad {
		if _, err := kind.New("msg_1", when, b); !errors.Is(err, kind.ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
}

func TestUnmarshalIsStrict(t *testing.T) {
	good, _ := kind.New("msg_1", when, &kind.TextBody{Text: "hallo"})
	data, _ := good.Marshal()
	var raw map[string]any
	json.Unmarshal(data, &raw)
	mutate := func(f func(map[string]any)) []byte {
		m := map[string]any{}
		json.Unmarshal(data, &m)
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	cases := map[string][]byte{
		"unknown top-level field": mutate(func(m map[string]any) { m["admin"] = true }),
		"unknown body field":      mutate(func(m map[string]any) { m["body"].(map[string]any)["html"] = "<b>" }),
		"unknown kind":            mutate(func(m map[string]any) { m["kind"] = "sticker" }),
		"wrong version":           mutate(func(m map[string]any) { m["v"] = 2 }),
		"missing body":            mutate(func(m map[string]any) { delete(m, "body") }),
		"body of another kind":    mutate(func(m map[string]any) { m["kind"] = "receipt" }),
		"bad id":                  mutate(func(m map[string]any) { m["id"] = "a b" }),
		"no sent_at":              mutate(func(m map[string]any) { delete(m, "sent_at") }),
		"trailing data":           append(append([]byte{}, data...), []byte(` {}`)...),
		"not json":                []byte("hallo"),
		"too large":               []byte(`{"v":1,"kind":"text","id":"m","sent_at":"2026-11-23T10:00:00Z","body":{"text":"` + strings.Repeat("x", kind.MaxMessage) + `"}}`),
	}
	for name, c := range cases {
		if _, err := kind.Unmarshal(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, b := range valid {
		m, _ := kind.New("msg_1", when, b)
		data, _ := m.Marshal()
		f.Add(data)
	}
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := kind.Unmarshal(data)
		if err != nil {
			return
		}
		// Whatever decodes must validate and re-encode to something that
		// decodes to the same message.
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("decoded message does not marshal: %v", err)
		}
		again, err := kind.Unmarshal(out)
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		b1, _ := m.Marshal()
		b2, _ := again.Marshal()
		if string(b1) != string(b2) {
			t.Fatalf("round trip changed the message")
		}
	})
}

// TestPaymentRequestCountsCharacters: creditor and purpose are limited in
// characters, as the payments API limits them (EPC069-12): a 70-character
// name with umlauts, which the server accepts, fits the message too.
func TestPaymentRequestCountsCharacters(t *testing.T) {
	b := &kind.PaymentRequestBody{RequestID: "r", AmountCents: 5, Currency: "EUR", Creditor: strings.Repeat("ä", kind.MaxCreditor),
		IBAN: "DE89370400440532013000", Reference: "RF18539007547034", DueDate: "2026-12-31", Purpose: strings.Repeat("ü", kind.MaxPurpose)}
	if _, err := kind.New("msg_1", when, b); err != nil {
		t.Fatalf("umlaut creditor and purpose at the limits: %v", err)
	}
	b.Creditor += "ä"
	if _, err := kind.New("msg_1", when, b); !errors.Is(err, kind.ErrInvalid) {
		t.Fatalf("71 characters: %v", err)
	}
}
