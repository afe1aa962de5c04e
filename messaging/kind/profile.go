package kind

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Profile is what an account tells the people it talks to about itself:
// a display name and, optionally, a small avatar. The account's devices
// send it end to end like any message; the server never sees it in clear.
// A profile is the account's claim about itself, not something kanal
// checks (docs/profiles.md).
const Profile Kind = "profile"

// Limits of a profile.
const (
	MaxDisplayName      = 64       // characters (code points) after normalisation
	MaxDisplayNameBytes = 256      // bytes of UTF-8
	MaxAvatarInline     = 16 << 10 // bytes of an avatar carried in the profile itself
	MaxAvatarBlob       = 1 << 20  // size of an avatar's encrypted blob when it is an attachment
)

// avatarTypes are the media types an avatar may have.
var avatarTypes = map[string]bool{"image/png": true, "image/jpeg": true, "image/webp": true}

// ProfileBody is an account's profile. AccountID must be the sending
// device's account (receivers check it against the device certificate);
// Version grows with every change, and of two copies the one with the
// higher Version wins (on a tie, the later UpdatedAt, then the smaller
// display name byte-wise, so every device picks the same).
type ProfileBody struct {
	AccountID   string         `json:"account_id"`
	Version     int64          `json:"version"`
	UpdatedAt   time.Time      `json:"updated_at"`
	DisplayName string         `json:"display_name"`
	Avatar      *ProfileAvatar `json:"avatar,omitempty"`
}

// ProfileAvatar is a small picture: either inline (Data, standard base64
// of at most MaxAvatarInline bytes) or an encrypted attachment of at most
// MaxAvatarBlob bytes, never both.
type ProfileAvatar struct {
	MIME       string          `json:"mime"` // image/png, image/jpeg or image/webp
	Data       string          `json:"data,omitempty"`
	Attachment *AttachmentBody `json:"attachment,omitempty"`
}

func (*ProfileBody) Kind() Kind { return Profile }
func (b *ProfileBody) Validate() error {
	if err := checkID("account_id", b.AccountID); err != nil {
		return invalid(Profile, "%v", err)
	}
	if b.Version < 1 {
		return invalid(Profile, "version must be at least 1")
	}
	if b.UpdatedAt.IsZero() {
		return invalid(Profile, "updated_at is required")
	}
	n, err := NormalizeDisplayName(b.DisplayName)
	if err != nil {
		return invalid(Profile, "%v", err)
	}
	if n != b.DisplayName {
		return invalid(Profile, "display_name is not in normal form (NFC, single spaces, no space at either end)")
	}
	if b.Avatar != nil {
		if err := b.Avatar.validate(); err != nil {
			return invalid(Profile, "avatar: %v", err)
		}
	}
	return nil
}

func (a *ProfileAvatar) validate() error {
	if !avatarTypes[a.MIME] {
		return fmt.Errorf("mime must be image/png, image/jpeg or image/webp")
	}
	switch {
	case a.Data != "" && a.Attachment != nil:
		return errors.New("data and attachment are exclusive")
	case a.Data != "":
		if base64.StdEncoding.DecodedLen(len(a.Data)) > MaxAvatarInline+2 {
			return fmt.Errorf("data is over %d bytes", MaxAvatarInline)
		}
		raw, err := base64.StdEncoding.Strict().DecodeString(a.Data)
		if err != nil {
			return errors.New("data must be standard base64")
		}
		if len(raw) == 0 || len(raw) > MaxAvatarInline {
			return fmt.Errorf("data must be 1..%d bytes", MaxAvatarInline)
		}
	case a.Attachment != nil:
		if err := a.Attachment.Validate(); err != nil {
			return err
		}
		if a.Attachment.Size > MaxAvatarBlob {
			return fmt.Errorf("attachment is over %d bytes", MaxAvatarBlob)
		}
		if a.Attachment.MIME != a.MIME {
			return errors.New("attachment's mime differs from the avatar's")
		}
	default:
		return errors.New("data or attachment is required")
	}
	return nil
}

// ErrDisplayName is wrapped by every refusal of NormalizeDisplayName.
var ErrDisplayName = errors.New("display name")

// NormalizeDisplayName returns s as a display name: Unicode NFC, runs of
// white space made one space, no space at either end. It refuses an empty
// name, one over MaxDisplayName characters or MaxDisplayNameBytes bytes,
// and one with characters that hide or disguise what is shown: control
// and format characters (bidirectional overrides and isolates, zero-width
// characters, soft hyphens), line and paragraph separators, private-use,
// surrogate and unassigned code points, the separators kanal puts
// between a person's name and an office's (· and its look-alikes), so
// that nobody can name themselves "Frau Schmidt · Bürgeramt Worms", and
// the check marks kanal puts after a name verified by eID.
func NormalizeDisplayName(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%w: not UTF-8", ErrDisplayName)
	}
	if len(s) > 4*MaxDisplayNameBytes {
		return "", fmt.Errorf("%w: over %d bytes", ErrDisplayName, MaxDisplayNameBytes)
	}
	s = norm.NFC.String(s)
	var b strings.Builder
	space := false
	for _, r := range s {
		switch {
		case r == ' ' || r == '\u00a0' || unicode.Is(unicode.Zs, r):
			space = b.Len() > 0
			continue
		case unicode.IsControl(r):
			return "", fmt.Errorf("%w: contains a control character (%U)", ErrDisplayName, r)
		case unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp, unicode.Co, unicode.Cs):
			return "", fmt.Errorf("%w: contains an invisible or formatting character (%U)", ErrDisplayName, r)
		case !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S):
			return "", fmt.Errorf("%w: contains an unassigned character (%U)", ErrDisplayName, r)
		case b.Len() == 0 && unicode.Is(unicode.M, r):
			return "", fmt.Errorf("%w: starts with a combining mark (%U)", ErrDisplayName, r)
		case separators[r]:
			return "", fmt.Errorf("%w: contains %q, which kanal shows between a person's name and an office's", ErrDisplayName, r)
		case checkMarks[r]:
			return "", fmt.Errorf("%w: contains %q, which kanal shows after a name verified by eID", ErrDisplayName, r)
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	out := b.String()
	switch {
	case out == "":
		return "", fmt.Errorf("%w: empty", ErrDisplayName)
	case utf8.RuneCountInString(out) > MaxDisplayName:
		return "", fmt.Errorf("%w: over %d characters", ErrDisplayName, MaxDisplayName)
	case len(out) > MaxDisplayNameBytes:
		return "", fmt.Errorf("%w: over %d bytes", ErrDisplayName, MaxDisplayNameBytes)
	}
	return out, nil
}

// NameSeparator is what kanal shows between an agent's display name and
// the organisation's name. Display names may not contain it or its
// look-alikes.
const NameSeparator = " · "

var separators = map[rune]bool{
	'\u00b7': true, // middle dot
	'\u0387': true, // Greek ano teleia
	'\u2022': true, // bullet
	'\u2027': true, // hyphenation point
	'\u2219': true, // bullet operator
	'\u22c5': true, // dot operator
	'\u30fb': true, // katakana middle dot
	'\uff65': true, // halfwidth katakana middle dot
	'\u16eb': true, // runic single punctuation
	'\u2e31': true, // word separator middle dot
	'\u318d': true, // hangul letter araea
	'\ua78f': true, // Latin letter sinological dot
	'\u2981': true, // z notation spot
	'\u25cf': true, // black circle
	'\u2024': true, // one dot leader
}

// checkMarks are the mark kanal shows after a name verified by eID
// ("Erika Mustermann ✓eID") and its look-alikes: no display name may
// contain one, so that nobody can call themselves "Erika Mustermann ✓eID".
var checkMarks = map[rune]bool{
	'\u2713':     true, // check mark
	'\u2714':     true, // heavy check mark
	'\u2705':     true, // white heavy check mark
	'\u2611':     true, // ballot box with check
	'\u221a':     true, // square root
	'\U0001f5f8': true, // light check mark
	'\U0001f5f9': true, // ballot box with bold check
}

// NewerProfile says whether a is newer than b by the rule of ProfileBody;
// a nil b is older than anything.
func NewerProfile(a, b *ProfileBody) bool {
	switch {
	case b == nil:
		return true
	case a.Version != b.Version:
		return a.Version > b.Version
	case !a.UpdatedAt.Equal(b.UpdatedAt):
		return a.UpdatedAt.After(b.UpdatedAt)
	default:
		return a.DisplayName < b.DisplayName
	}
}
