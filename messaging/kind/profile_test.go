package kind_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/kanal-server/kanal/messaging/kind"
)

// TestDisplayNames: what a person types becomes the name others see —
// normalised to NFC with single spaces — and what would hide or disguise
// a name is refused.
func TestDisplayNames(t *testing.T) {
	for in, want := range map[string]string{
		"Frau Schmidt":            "Frau Schmidt",
		"  Erika   Mustermann ":   "Erika Mustermann",
		"Erika\u00a0Mustermann":   "Erika Mustermann", // no-break space is a space
		"Jo\u0308rg Mu\u0308ller": "Jörg Müller",      // decomposed umlauts composed (NFC)
		"Ægir Ørsted-Ødegård":     "Ægir Ørsted-Ødegård",
		"أحمد":                    "أحمد", // right-to-left script, no overrides needed
		"李小龍":                     "李小龍",
		"Dr. Anna-Lena O'Brien 🎉": "Dr. Anna-Lena O'Brien 🎉",
	} {
		got, err := kind.NormalizeDisplayName(in)
		if err != nil || got != want {
			t.Errorf("NormalizeDisplayName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for name, in := range map[string]string{
		"empty":                  "",
		"only spaces":            "   ",
		"newline":                "Erika\nMustermann",
		"tab":                    "Erika\tMustermann",
		"NUL":                    "Erika\x00",
		"right-to-left override": "Erika \u202enamretsuM",
		"left-to-right isolate":  "\u2066Erika\u2069",
		"zero-width space":       "Eri\u200bka",
		"zero-width joiner":      "Eri\u200dka",
		"soft hyphen":            "Eri\u00adka",
		"line separator":         "Erika\u2028Mustermann",
		"private use":            "Erika \ue000",
		"unassigned":             "Erika \U000e0fff",
		"not UTF-8":              "Erika \xff",
		"agent's separator":      "Frau Schmidt · Bürgeramt Worms",
		"bullet look-alike":      "Frau Schmidt • Bürgeramt Worms",
		"katakana middle dot":    "Frau Schmidt ・ Bürgeramt Worms",
		"Greek ano teleia":       "Frau Schmidt \u0387 Bürgeramt Worms", // NFC makes it a middle dot
		"eID check mark":         "Erika Mustermann ✓eID",
		"heavy check mark":       "Erika Mustermann ✔eID",
		"leading combining mark": "\u0301Erika",
		"too long":               strings.Repeat("a", kind.MaxDisplayName+1),
		"huge":                   strings.Repeat("a", 1<<20),
	} {
		if got, err := kind.NormalizeDisplayName(in); !errors.Is(err, kind.ErrDisplayName) {
			t.Errorf("%s: NormalizeDisplayName(%q) = %q, %v; want refused", name, in, got, err)
		}
	}
	// Exactly at the limit is fine.
	if _, err := kind.NormalizeDisplayName(strings.Repeat("ä", kind.MaxDisplayName)); err != nil {
		t.Errorf("64 characters: %v", err)
	}
}

// TestInvalidProfiles: a profile that does not validate is neither sent
// nor accepted.
func TestInvalidProfiles(t *testing.T) {
	good := func() *kind.ProfileBody {
		return &kind.ProfileBody{AccountID: "acc_1", Version: 1, UpdatedAt: when, DisplayName: "Erika Mustermann"}
	}
	if err := good().Validate(); err != nil {
		t.Fatal(err)
	}
	att := &kind.AttachmentBody{BlobID: "blob_1", Key: key32, SHA256: sha256, Size: 4096, MIME: "image/jpeg"}
	withAtt := good()
	withAtt.Avatar = &kind.ProfileAvatar{MIME: "image/jpeg", Attachment: att}
	if err := withAtt.Validate(); err != nil {
		t.Fatalf("avatar as an attachment: %v", err)
	}
	bigAtt := *att
	bigAtt.Size = kind.MaxAvatarBlob + 1
	otherMIME := *att
	otherMIME.MIME = "image/png"
	for name, mod := range map[string]func(b *kind.ProfileBody){
		"no account":          func(b *kind.ProfileBody) { b.AccountID = "" },
		"bad account":         func(b *kind.ProfileBody) { b.AccountID = "acc 1" },
		"version 0":           func(b *kind.ProfileBody) { b.Version = 0 },
		"negative version":    func(b *kind.ProfileBody) { b.Version = -1 },
		"no time":             func(b *kind.ProfileBody) { b.UpdatedAt = time.Time{} },
		"no name":             func(b *kind.ProfileBody) { b.DisplayName = "" },
		"name not normalised": func(b *kind.ProfileBody) { b.DisplayName = " Erika  Mustermann" },
		"name decomposed":     func(b *kind.ProfileBody) { b.DisplayName = "Jo\u0308rg" },
		"bidi override":       func(b *kind.ProfileBody) { b.DisplayName = "Erika\u202e" },
		"separator":           func(b *kind.ProfileBody) { b.DisplayName = "Frau Schmidt · Bürgeramt Worms" },
		"avatar type":         func(b *kind.ProfileBody) { b.Avatar = &kind.ProfileAvatar{MIME: "image/svg+xml", Data: "PHN2Zz4="} },
		"avatar empty":        func(b *kind.ProfileBody) { b.Avatar = &kind.ProfileAvatar{MIME: "image/png"} },
		"avatar not base64":   func(b *kind.ProfileBody) { b.Avatar = &kind.ProfileAvatar{MIME: "image/png", Data: "not base64!"} },
		"avatar oversize": func(b *kind.ProfileBody) {
			b.Avatar = &kind.ProfileAvatar{MIME: "image/png", Data: base64.StdEncoding.EncodeToString(make([]byte, kind.MaxAvatarInline+1))}
		},
		"avatar both": func(b *kind.ProfileBody) {
			b.Avatar = &kind.ProfileAvatar{MIME: "image/jpeg", Data: "iVBORw0KGgo=", Attachment: att}
		},
		"avatar blob oversize": func(b *kind.ProfileBody) { b.Avatar = &kind.ProfileAvatar{MIME: "image/jpeg", Attachment: &bigAtt} },
		"avatar blob mime":     func(b *kind.ProfileBody) { b.Avatar = &kind.ProfileAvatar{MIME: "image/jpeg", Attachment: &otherMIME} },
		"avatar blob malformed": func(b *kind.ProfileBody) {
			b.Avatar = &kind.ProfileAvatar{MIME: "image/jpeg", Attachment: &kind.AttachmentBody{MIME: "image/jpeg"}}
		},
	} {
		b := good()
		mod(b)
		err := b.Validate()
		if !errors.Is(err, kind.ErrInvalid) {
			t.Errorf("%s: %v, want invalid", name, err)
			continue
		}
		if _, err := kind.New("m1", when, b); err == nil {
			t.Errorf("%s: kind.New accepted it", name)
		}
	}
	// An unknown field is refused on the way in.
	raw := `{"v":1,"kind":"profile","id":"m1","sent_at":"2026-11-23T10:00:00Z","body":{"account_id":"acc_1","version":1,"updated_at":"2026-11-23T10:00:00Z","display_name":"Erika","verified":true}}`
	if _, err := kind.Unmarshal([]byte(raw)); !errors.Is(err, kind.ErrInvalid) {
		t.Errorf("unknown field: %v", err)
	}
}

// FuzzDisplayName: whatever is typed, a name that is accepted is NFC,
// stable under normalising again, within the limits, free of control and
// format characters and of the agent separator, and valid in a profile.
func FuzzDisplayName(f *testing.F) {
	for _, s := range []string{"Frau Schmidt", " a  b ", "Jo\u0308rg", "\u202e", "a\u00b7b", "\u0301x", "x\u0301", "\u00a0 \u3000a", "😀\u200d😀", "\xff", "a ✓eID"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := kind.NormalizeDisplayName(s)
		if err != nil {
			if !errors.Is(err, kind.ErrDisplayName) {
				t.Fatalf("error %v does not wrap ErrDisplayName", err)
			}
			return
		}
		if !norm.NFC.IsNormalString(n) {
			t.Fatalf("%q is not NFC", n)
		}
		again, err := kind.NormalizeDisplayName(n)
		if err != nil || again != n {
			t.Fatalf("normalising %q again gave %q, %v", n, again, err)
		}
		if n == "" || utf8.RuneCountInString(n) > kind.MaxDisplayName || len(n) > kind.MaxDisplayNameBytes {
			t.Fatalf("%q is out of the limits", n)
		}
		if strings.TrimSpace(n) != n || strings.Contains(n, "  ") || strings.Contains(n, kind.NameSeparator) || strings.ContainsRune(n, '✓') {
			t.Fatalf("%q has stray spaces, the separator or the eID mark", n)
		}
		for _, r := range n {
			if unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) {
				t.Fatalf("%q contains %U", n, r)
			}
		}
		b := &kind.ProfileBody{AccountID: "acc_1", Version: 1, UpdatedAt: when, DisplayName: n}
		if err := b.Validate(); err != nil {
			t.Fatalf("a normalised name does not validate: %v", err)
		}
	})
}
