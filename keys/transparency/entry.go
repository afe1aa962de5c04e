package transparency

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

// Kind names what an entry records.
type Kind string

// The kinds of entries.
const (
	KindDevice            Kind = "device"             // a device and its certificate (enrolment, renewal)
	KindIdentityKey       Kind = "identity-key"       // a device's published E2E identity key
	KindDeviceRevoked     Kind = "device-revoked"     // a device's revocation
	KindMembership        Kind = "membership"         // a membership certificate of a device
	KindMembershipRevoked Kind = "membership-revoked" // the end of a membership
	KindSurveyHead        Kind = "survey-head"        // a survey board's signed head
)

// Entry format versions. Version 1 names the account in clear; version 2
// names a commitment to it (AccountCommitment), so that deleting the
// account's salt leaves the entry naming no one. Servers append version 2
// only; clients accept both, for the entries logged before.
const (
	V1 = 1
	V2 = 2
)

// headers are an entry's first line, by version.
var headers = map[int]string{V1: "kanal-log v1", V2: "kanal-log v2"}

// ErrEntry is wrapped by every error of ParseEntry and Entry.Marshal.
var ErrEntry = errors.New("transparency: invalid entry")

// Fingerprint is the SHA-256 of a certificate's DER encoding.
type Fingerprint [sha256.Size]byte

// CertFingerprint returns the fingerprint of a DER certificate.
func CertFingerprint(der []byte) Fingerprint { return sha256.Sum256(der) }

// String returns "sha256:" and the lower-case hex of f, an entry's form.
func (f Fingerprint) String() string { return "sha256:" + hex.EncodeToString(f[:]) }

// SaltBytes is the length of an account's salt.
const SaltBytes = 32

// Salt is the random value, one per account and kept by the server, that
// AccountCommitment hides the account id with. Deleting it at the
// account's erasure leaves its commitments naming no one.
type Salt [SaltBytes]byte

// Commitment is SHA-256("kanal-account/v1" || salt || account id): what a
// version 2 entry names instead of the account. The prefix and the salt
// have fixed lengths, so one commitment has one (salt, id) reading; who
// knows the salt and the id recomputes it, who knows neither learns
// nothing from it.
type Commitment [sha256.Size]byte

// commitmentPrefix separates account commitments from every other hash.
const commitmentPrefix = "kanal-account/v1"

// AccountCommitment returns the commitment to account under salt.
func AccountCommitment(salt Salt, account string) Commitment {
	h := sha256.New()
	h.Write([]byte(commitmentPrefix))
	h.Write(salt[:])
	h.Write([]byte(account))
	var c Commitment
	h.Sum(c[:0])
	return c
}

// String returns the 64 lower-case hex digits of c, an entry's form.
func (c Commitment) String() string { return hex.EncodeToString(c[:]) }

// SaltOf returns b as a Salt if it has SaltBytes bytes.
func SaltOf(b []byte) (Salt, bool) {
	var s Salt
	if len(b) != SaltBytes {
		return s, false
	}
	copy(s[:], b)
	return s, true
}

// Entry is one log entry. Which fields a kind carries, and in which order
// they are encoded, is fields(Version)[Kind]; the others are zero.
type Entry struct {
	Version    int // V1 or V2; 0 is V1
	Kind       Kind
	Org        string      // membership, membership-revoked
	Account    string      // version 1: every kind but survey-head
	Commitment Commitment  // version 2: every kind but survey-head, instead of Account
	Device     string      // every kind but survey-head
	Role       string      // membership
	Cert       Fingerprint // every kind but survey-head: the device certificate's, or the membership certificate's
	Key        []byte      // identity-key: the identity public key's wire encoding (keys.IdentityPublic.MarshalBinary)
	Survey     string      // survey-head
	Size       uint64      // survey-head: the board's size
	Head       []byte      // survey-head: the board's head hash
	Time       int64       // unix seconds when the server logged it
}

// fieldsV1 lists each kind's lines after "kind", in order, in version 1.
var fieldsV1 = map[Kind][]string{
	KindDevice:            {"account", "device", "cert", "time"},
	KindIdentityKey:       {"account", "device", "cert", "key", "time"},
	KindDeviceRevoked:     {"account", "device", "cert", "time"},
	KindMembership:        {"org", "account", "device", "role", "cert", "time"},
	KindMembershipRevoked: {"org", "account", "device", "cert", "time"},
	KindSurveyHead:        {"survey", "size", "head", "time"},
}

// fieldsV2 is fieldsV1 with "commitment" in the place of "account".
var fieldsV2 = func() map[Kind][]string {
	m := map[Kind][]string{}
	for k, names := range fieldsV1 {
		m[k] = make([]string, len(names))
		for i, n := range names {
			if n == "account" {
				n = "commitment"
			}
			m[k][i] = n
		}
	}
	return m
}()

// fields returns the lines of kind in version v, and whether both exist.
func fields(v int, k Kind) ([]string, bool) {
	var names []string
	var ok bool
	switch v {
	case 0, V1:
		names, ok = fieldsV1[k]
	case V2:
		names, ok = fieldsV2[k]
	}
	return names, ok
}

// version is e's version, 0 read as V1.
func (e *Entry) version() int {
	if e.Version == 0 {
		return V1
	}
	return e.Version
}

// NamesAccount reports whether e is about account: a version 1 entry
// names it, a version 2 entry names the commitment to it under salt
// (salt as an attachment carries it; anything but SaltBytes bytes names
// no one). A survey head is about no account.
func (e *Entry) NamesAccount(account string, salt []byte) bool {
	if account == "" {
		return false
	}
	if e.version() == V1 {
		return e.Account == account
	}
	s, ok := SaltOf(salt)
	if !ok || e.Commitment == (Commitment{}) {
		return false
	}
	return e.Commitment == AccountCommitment(s, account)
}

func entryErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrEntry, fmt.Sprintf(format, a...))
}

// Marshal encodes e: "kanal-log v1" (or v2), "kind <kind>", then one
// "name value" line per field of the kind, each line ending in "\n". It
// checks e as ParseEntry would.
func (e *Entry) Marshal() ([]byte, error) {
	header, ok := headers[e.version()]
	if !ok {
		return nil, entryErr("unknown version %d", e.Version)
	}
	names, ok := fields(e.Version, e.Kind)
	if !ok {
		return nil, entryErr("unknown kind %q", e.Kind)
	}
	var b bytes.Buffer
	b.WriteString(header + "\n")
	b.WriteString("kind " + string(e.Kind) + "\n")
	for _, name := range names {
		v, err := e.value(name)
		if err != nil {
			return nil, err
		}
		b.WriteString(name + " " + v + "\n")
	}
	if b.Len() > MaxEntryBytes {
		return nil, entryErr("longer than %d bytes", MaxEntryBytes)
	}
	// Fields that the kind does not carry must be empty: an entry that
	// says more than it encodes would mislead whoever holds the struct.
	other := *e
	other.Kind, other.Version = "", 0
	for _, name := range names {
		other.clear(name)
	}
	if !other.zero() {
		return nil, entryErr("a %s entry sets a field it does not carry", e.Kind)
	}
	return b.Bytes(), nil
}

func (e *Entry) zero() bool {
	return e.Kind == "" && e.Version == 0 && e.Org == "" && e.Account == "" && e.Commitment == (Commitment{}) && e.Device == "" && e.Role == "" &&
		e.Cert == (Fingerprint{}) && e.Key == nil && e.Survey == "" && e.Size == 0 && e.Head == nil && e.Time == 0
}

func (e *Entry) clear(name string) {
	switch name {
	case "org":
		e.Org = ""
	case "account":
		e.Account = ""
	case "commitment":
		e.Commitment = Commitment{}
	case "device":
		e.Device = ""
	case "role":
		e.Role = ""
	case "cert":
		e.Cert = Fingerprint{}
	case "key":
		e.Key = nil
	case "survey":
		e.Survey = ""
	case "size":
		e.Size = 0
	case "head":
		e.Head = nil
	case "time":
		e.Time = 0
	}
}

// value is the text of one field, checked.
func (e *Entry) value(name string) (string, error) {
	switch name {
	case "org", "account", "device", "survey":
		v := map[string]string{"org": e.Org, "account": e.Account, "device": e.Device, "survey": e.Survey}[name]
		if !validID(v) {
			return "", entryErr("%s %q is not an id (1 to %d of A-Z a-z 0-9 - _ .)", name, v, MaxIDBytes)
		}
		return v, nil
	case "role":
		if !validRole(e.Role) {
			return "", entryErr("role %q is not 1 to %d lower-case letters", e.Role, MaxRoleBytes)
		}
		return e.Role, nil
	case "cert":
		if e.Cert == (Fingerprint{}) {
			return "", entryErr("cert is missing")
		}
		return e.Cert.String(), nil
	case "commitment":
		if e.Commitment == (Commitment{}) {
			return "", entryErr("commitment is missing")
		}
		return e.Commitment.String(), nil
	case "key":
		if len(e.Key) == 0 || len(e.Key) > MaxKeyBytes {
			return "", entryErr("key must be 1 to %d bytes", MaxKeyBytes)
		}
		return base64.StdEncoding.EncodeToString(e.Key), nil
	case "head":
		if len(e.Head) == 0 || len(e.Head) > MaxHeadBytes {
			return "", entryErr("head must be 1 to %d bytes", MaxHeadBytes)
		}
		return base64.StdEncoding.EncodeToString(e.Head), nil
	case "size":
		return strconv.FormatUint(e.Size, 10), nil
	case "time":
		if e.Time < 0 {
			return "", entryErr("time is negative")
		}
		return strconv.FormatInt(e.Time, 10), nil
	}
	return "", entryErr("unknown field %q", name)
}

// ParseEntry parses an encoded entry strictly: the header, a known kind,
// exactly the kind's lines in order, valid values, "\n" line ends and
// nothing else. An entry parses only if it is the one encoding of what it
// says (Marshal of the result gives back data).
func ParseEntry(data []byte) (*Entry, error) {
	if len(data) > MaxEntryBytes {
		return nil, entryErr("longer than %d bytes", MaxEntryBytes)
	}
	s := string(data)
	if !strings.HasSuffix(s, "\n") {
		return nil, entryErr("does not end in a line feed")
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	e := &Entry{}
	switch lines[0] {
	case headers[V1]:
		e.Version = V1
	case headers[V2]:
		e.Version = V2
	default:
		return nil, entryErr("first line is not %q or %q", headers[V1], headers[V2])
	}
	if len(lines) < 2 || !strings.HasPrefix(lines[1], "kind ") {
		return nil, entryErr("second line is not the kind")
	}
	e.Kind = Kind(strings.TrimPrefix(lines[1], "kind "))
	names, ok := fields(e.Version, e.Kind)
	if !ok {
		return nil, entryErr("unknown kind %q", e.Kind)
	}
	if len(lines) != 2+len(names) {
		return nil, entryErr("a %s entry has %d lines after the kind, not %d", e.Kind, len(names), len(lines)-2)
	}
	for i, name := range names {
		v, ok := strings.CutPrefix(lines[2+i], name+" ")
		if !ok {
			return nil, entryErr("line %d is not %q", 3+i, name)
		}
		if err := e.set(name, v); err != nil {
			return nil, err
		}
	}
	back, err := e.Marshal()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(back, data) {
		return nil, entryErr("not in canonical form")
	}
	return e, nil
}

func (e *Entry) set(name, v string) error {
	var err error
	switch name {
	case "org":
		e.Org = v
	case "account":
		e.Account = v
	case "device":
		e.Device = v
	case "survey":
		e.Survey = v
	case "role":
		e.Role = v
	case "cert":
		h, ok := strings.CutPrefix(v, "sha256:")
		b, herr := hex.DecodeString(h)
		if !ok || herr != nil || len(b) != len(e.Cert) {
			return entryErr("cert is not sha256: and 64 hex digits")
		}
		copy(e.Cert[:], b)
	case "commitment":
		b, herr := hex.DecodeString(v)
		if herr != nil || len(b) != len(e.Commitment) {
			return entryErr("commitment is not 64 hex digits")
		}
		copy(e.Commitment[:], b)
	case "key":
		if e.Key, err = base64.StdEncoding.Strict().DecodeString(v); err != nil || len(e.Key) == 0 {
			return entryErr("key is not standard base64")
		}
	case "head":
		if e.Head, err = base64.StdEncoding.Strict().DecodeString(v); err != nil || len(e.Head) == 0 {
			return entryErr("head is not standard base64")
		}
	case "size":
		if e.Size, err = strconv.ParseUint(v, 10, 64); err != nil {
			return entryErr("size is not a decimal number")
		}
	case "time":
		if e.Time, err = strconv.ParseInt(v, 10, 64); err != nil || e.Time < 0 {
			return entryErr("time is not a non-negative decimal number")
		}
	}
	return nil
}

// LeafHash is the RFC 6962 leaf hash of an encoded entry:
// SHA-256(0x00 || data).
func LeafHash(data []byte) tlog.Hash { return tlog.RecordHash(data) }

func validID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

func validRole(s string) bool {
	if len(s) == 0 || len(s) > MaxRoleBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 'a' || s[i] > 'z' {
			return false
		}
	}
	return true
}
