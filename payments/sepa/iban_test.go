package sepa

import (
	"bufio"
	"errors"
	"os"
	"strings"
	"testing"
)

// vectors reads "valid|invalid<TAB>value" lines from a testdata file.
func vectors(t *testing.T, name string) (valid, invalid []string) {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kind, v, ok := strings.Cut(line, "\t")
		switch {
		case ok && kind == "valid":
			valid = append(valid, v)
		case ok && kind == "invalid":
			invalid = append(invalid, v)
		default:
			t.Fatalf("%s: bad line %q", name, line)
		}
	}
	if len(valid) == 0 || len(invalid) == 0 {
		t.Fatalf("%s: no vectors", name)
	}
	return valid, invalid
}

func TestIBANPublishedExamples(t *testing.T) {
	valid, invalid := vectors(t, "iban.txt")
	for _, v := range valid {
		got, err := NormalizeIBAN(v)
		if err != nil {
			t.Errorf("NormalizeIBAN(%q): %v", v, err)
		} else if got != strings.ReplaceAll(v, " ", "") {
			t.Errorf("NormalizeIBAN(%q) = %q", v, got)
		}
	}
	for _, v := range invalid {
		if _, err := NormalizeIBAN(v); !errors.Is(err, ErrInvalidIBAN) {
			t.Errorf("NormalizeIBAN(%q) = %v, want ErrInvalidIBAN", v, err)
		}
	}
}

func TestIBANLowerCaseAccepted(t *testing.T) {
	got, err := NormalizeIBAN("de89 3704 0044 0532 0130 00")
	if err != nil || got != "DE89370400440532013000" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestReferencePublishedExamples(t *testing.T) {
	valid, invalid := vectors(t, "rf.txt")
	for _, v := range valid {
		if _, err := NormalizeReference(v); err != nil {
			t.Errorf("NormalizeReference(%q): %v", v, err)
		}
	}
	for _, v := range invalid {
		if _, err := NormalizeReference(v); !errors.Is(err, ErrInvalidReference) {
			t.Errorf("NormalizeReference(%q) = %v, want ErrInvalidReference", v, err)
		}
	}
}

func TestNewReferenceMatchesISOExample(t *testing.T) {
	got, err := NewReference("539007547034")
	if err != nil || got != "RF18539007547034" {
		t.Fatalf("NewReference = %q, %v; want RF18539007547034 (ISO 11649)", got, err)
	}
	for _, body := range []string{"", "1234567890123456789012", "AB-C"} {
		if _, err := NewReference(body); !errors.Is(err, ErrInvalidReference) {
			t.Errorf("NewReference(%q) = %v", body, err)
		}
	}
}

func FuzzReference(f *testing.F) {
	f.Add("539007547034")
	f.Add("G72UUR")
	f.Fuzz(func(t *testing.T, body string) {
		ref, err := NewReference(body)
		if err != nil {
			return
		}
		if _, err := NormalizeReference(ref); err != nil {
			t.Fatalf("NewReference(%q) = %q does not check: %v", body, ref, err)
		}
		// Changing any one character of the body breaks the checksum:
		// MOD 97-10 detects all single substitutions.
		b := []byte(ref)
		i := 4 + len(body)/2
		if b[i] == '0' {
			b[i] = '1'
		} else {
			b[i] = '0'
		}
		if _, err := NormalizeReference(string(b)); err == nil {
			t.Fatalf("%q accepted after changing %q", b, ref)
		}
	})
}
