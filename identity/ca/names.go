package ca

import (
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Level is an account's level of assurance (see docs/design.md). The zero value
// is not a level.
type Level uint8

const (
	LevelLow         Level = 1 // e-mail verified by a one-time code
	LevelSubstantial Level = 2 // password and an enrolled device key
	LevelHigh        Level = 3 // external eID
)

var levelNames = [...]string{LevelLow: "low", LevelSubstantial: "substantial", LevelHigh: "high"}

func (l Level) valid() bool { return l >= LevelLow && l <= LevelHigh }

// String returns "low", "substantial" or "high".
func (l Level) String() string {
	if !l.valid() {
		return fmt.Sprintf("Level(%d)", uint8(l))
	}
	return levelNames[l]
}

// ParseLevel parses "low", "substantial" or "high".
func ParseLevel(s string) (Level, error) {
	for l, name := range levelNames {
		if name != "" && name == s {
			return Level(l), nil
		}
	}
	return 0, fmt.Errorf("%w: %q", ErrInvalidLevel, s)
}

// MarshalText implements encoding.TextMarshaler.
func (l Level) MarshalText() ([]byte, error) {
	if !l.valid() {
		return nil, fmt.Errorf("%w: %d", ErrInvalidLevel, uint8(l))
	}
	return []byte(l.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (l *Level) UnmarshalText(b []byte) error {
	v, err := ParseLevel(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// OrgKind is the kind of a verified organisation. The zero value is not a kind.
type OrgKind uint8

const (
	OrgOffice   OrgKind = 1 // a municipal office, e.g. the Bürgeramt
	OrgCouncil  OrgKind = 2 // the city council
	OrgMerchant OrgKind = 3 // a local business
)

var orgKindNames = [...]string{OrgOffice: "office", OrgCouncil: "council", OrgMerchant: "merchant"}

func (k OrgKind) valid() bool { return k >= OrgOffice && k <= OrgMerchant }

// String returns "office", "council" or "merchant".
func (k OrgKind) String() string {
	if !k.valid() {
		return fmt.Sprintf("OrgKind(%d)", uint8(k))
	}
	return orgKindNames[k]
}

// ParseOrgKind parses "office", "council" or "merchant".
func ParseOrgKind(s string) (OrgKind, error) {
	for k, name := range orgKindNames {
		if name != "" && name == s {
			return OrgKind(k), nil
		}
	}
	return 0, fmt.Errorf("%w: %q", ErrInvalidOrgKind, s)
}

// MarshalText implements encoding.TextMarshaler.
func (k OrgKind) MarshalText() ([]byte, error) {
	if !k.valid() {
		return nil, fmt.Errorf("%w: %d", ErrInvalidOrgKind, uint8(k))
	}
	return []byte(k.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *OrgKind) UnmarshalText(b []byte) error {
	v, err := ParseOrgKind(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// ValidID reports whether s may be used as an account, device or
// organisation id, or a role: 1 to MaxIDLength bytes of ASCII letters,
// digits, '-', '_' and '.'. The charset keeps ids unambiguous inside
// kanal:<kind>:<id> URIs, in subjects and in file names.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

func checkID(what, s string) error {
	if !ValidID(s) {
		return fmt.Errorf("%w: %s %q", ErrInvalidID, what, truncate(s))
	}
	return nil
}

func checkRole(s string) error {
	if !ValidID(s) {
		return fmt.Errorf("%w: %q", ErrInvalidRole, truncate(s))
	}
	return nil
}

// checkName validates a display name: valid UTF-8, 1 to MaxNameLength
// bytes, no control characters, no leading or trailing space.
func checkName(s string) error {
	if len(s) == 0 || len(s) > MaxNameLength || !utf8.ValidString(s) || strings.TrimSpace(s) != s {
		return fmt.Errorf("%w: %q", ErrInvalidName, truncate(s))
	}
	for _, r := range s {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) {
			return fmt.Errorf("%w: control character", ErrInvalidName)
		}
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// URI kinds in subject alternative names.
const (
	uriAccount = "account"
	uriDevice  = "device"
	uriOrg     = "org"
)

func kanalURI(kind, id string) *url.URL {
	return &url.URL{Scheme: "kanal", Opaque: kind + ":" + id}
}

// parseURIs reads the URI SANs of a certificate into kind → id. Every URI
// must be kanal:<kind>:<id> with a known kind in want, each kind exactly
// once, and no other name forms may be present.
func parseURIs(uris []*url.URL, want ...string) (map[string]string, error) {
	if len(uris) != len(want) {
		return nil, fmt.Errorf("%w: want %d URI names, have %d", ErrMalformed, len(want), len(uris))
	}
	out := make(map[string]string, len(want))
	for _, u := range uris {
		// kanal:<kind>:<id> parses as scheme "kanal" with an opaque part; any
		// host, path, query or fragment means some other shape.
		if u.Scheme != "kanal" || u.Opaque == "" || u.User != nil || u.Host != "" ||
			u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
			return nil, fmt.Errorf("%w: unexpected URI name", ErrMalformed)
		}
		kind, id, ok := strings.Cut(u.Opaque, ":")
		if !ok || !ValidID(id) {
			return nil, fmt.Errorf("%w: bad kanal URI", ErrMalformed)
		}
		known := false
		for _, w := range want {
			known = known || w == kind
		}
		if !known {
			return nil, fmt.Errorf("%w: unexpected kanal:%s name", ErrMalformed, kind)
		}
		if _, dup := out[kind]; dup {
			return nil, fmt.Errorf("%w: repeated kanal:%s name", ErrMalformed, kind)
		}
		out[kind] = id
	}
	return out, nil
}
