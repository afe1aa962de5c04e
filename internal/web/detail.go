package web

import (
	"strings"
)

// Detail is err as a problem's detail for people: the chain of wrapped
// errors without the prefixes that name kanal's packages and operations
// ("payments.import: ", "camt: ", "surveys: "), and without a part that
// repeats an earlier one, so that
//
//	bank statement refused: payments.import: bank statement refused: camt: invalid statement: no Ntry
//
// reads "bank statement refused: invalid statement: no Ntry". The full
// chain belongs in the log, not in the answer.
func Detail(err error) string {
	if err == nil {
		return ""
	}
	return DetailText(err.Error())
}

// DetailText is Detail for an error's text.
func DetailText(s string) string {
	parts := strings.Split(s, ": ")
	out := make([]string, 0, len(parts))
	seen := map[string]bool{}
	for i, p := range parts {
		last := i == len(parts)-1
		if !last && isPackagePrefix(p) {
			continue
		}
		key := strings.ToLower(strings.TrimSpace(p))
		if seen[key] && !last {
			continue
		}
		seen[key] = true
		out = append(out, p)
	}
	if len(out) == 0 {
		return s
	}
	return strings.Join(out, ": ")
}

// packageWords are the one-word prefixes of kanal's packages that errors
// carry; a prefix with a dot or a slash (payments.import, messaging/client)
// that starts with one is one too. Package names that are also words of a
// message (identity, offer, contract) are not on the list: a detail such
// as "identity: invalid key" names a field.
var packageWords = map[string]bool{
	"bus": true, "camt": true, "epc": true, "jws": true, "keystore": true, "mailbox": true, "messaging": true,
	"payments": true, "push": true, "pushtest": true, "surveys": true, "translog": true, "transparency": true, "web": true,
}

func isPackagePrefix(p string) bool {
	if p == "" || packageWords[p] {
		return p != ""
	}
	dotted := false
	for _, r := range p {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '-':
		case r == '.' || r == '/':
			dotted = true
		default:
			return false
		}
	}
	if !dotted {
		return false
	}
	first := p
	if i := strings.IndexAny(p, "./"); i >= 0 {
		first = p[:i]
	}
	return packageWords[first] || strings.HasPrefix(p, "kanal")
}
