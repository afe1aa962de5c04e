package miniapps

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/identity/orgsig"
)

// TypeManifest is the "typ" of a manifest JWS: a manifest is never taken
// for an offer or a contract, nor the other way round.
const TypeManifest = "kanal-miniapp+jws"

// Scopes a mini-app may ask for. openid is required; the others each
// unlock one thing and each needs the citizen's consent.
const (
	ScopeOpenID          = "openid"           // sign in: a pairwise subject
	ScopeProfile         = "profile"          // the citizen's display name
	ScopeLevel           = "level"            // the session's level of assurance as a claim (acr is always set)
	ScopePaymentsRequest = "payments.request" // the bridge: ask the citizen for a payment
	ScopeChatPost        = "chat.post"        // the bridge: post into the conversation the app was opened from
	ScopeFormsRequest    = "forms.request"    // the bridge: send a form.request
	ScopePush            = "push"             // reserved: notify the citizen's devices
	// ScopeOfflineAccess is OpenID's scope for refresh tokens; it needs no
	// consent of its own (it only keeps openid working) and no manifest
	// entry.
	ScopeOfflineAccess = "offline_access"
)

// AllScopes lists the manifest scopes in the order they are shown.
var AllScopes = []string{ScopeOpenID, ScopeProfile, ScopeLevel, ScopePaymentsRequest, ScopeChatPost, ScopeFormsRequest, ScopePush}

// ScopeText says what granting a scope lets the app do, as a citizen
// reads it before consenting.
var ScopeText = map[string]string{
	ScopeOpenID:          "sign you in with an identifier for this app alone",
	ScopeProfile:         "see your display name",
	ScopeLevel:           "see how strongly you are identified (low, substantial, high)",
	ScopePaymentsRequest: "ask you for payments, which you confirm in kanal",
	ScopeChatPost:        "post messages into the conversation you opened it from",
	ScopeFormsRequest:    "send you forms to fill in",
	ScopePush:            "send you notifications",
}

// Manifest is what an organisation signs about one version of its app.
type Manifest struct {
	Version   int      `json:"v"` // 1
	AppID     string   `json:"app_id"`
	OrgID     string   `json:"org_id"`
	Name      string   `json:"name"`
	AppVer    int      `json:"version"` // grows with every change
	Origins   []string `json:"origins"`
	Redirects []string `json:"redirect_uris"`
	// PostLogout are the URIs RP-initiated logout may return to; empty:
	// the redirect URIs.
	PostLogout []string `json:"post_logout_redirect_uris,omitempty"`
	// LaunchURL is where "open" sends the citizen, with the launch token;
	// it must be under one of the origins.
	LaunchURL string   `json:"launch_url"`
	Icon      string   `json:"icon"` // https URL (http only for a loopback host)
	Scopes    []string `json:"scopes"`
	// Sector, if set, is the sector identifier of apps that share
	// subjects: the organisation's apps with the same sector see the same
	// pairwise subject for a citizen. Empty: the app is its own sector.
	Sector   string    `json:"sector,omitempty"`
	IssuedAt time.Time `json:"issued_at"`
}

var (
	appIDPattern  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$`)
	sectorPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}$`)
)

// Validate checks a manifest's fields.
func (m *Manifest) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: manifest: "+format, append([]any{ErrInvalidManifest}, args...)...)
	}
	switch {
	case m.Version != 1:
		return bad("v must be 1")
	case !appIDPattern.MatchString(m.AppID):
		return bad("app_id must be 3 to 40 of a-z, 0-9 and -")
	case !ca.ValidID(m.OrgID):
		return bad("org_id")
	case m.AppVer < 1:
		return bad("version must be 1 or more")
	case m.IssuedAt.IsZero():
		return bad("issued_at is required")
	case m.Sector != "" && !sectorPattern.MatchString(m.Sector):
		return bad("sector must be lower-case letters, digits, dots and dashes")
	case strings.TrimSpace(m.Name) == "" || !utf8.ValidString(m.Name) || utf8.RuneCountInString(m.Name) > MaxName || strings.ContainsFunc(m.Name, isControl):
		return bad("name must be 1 to %d printable characters", MaxName)
	case len(m.Origins) == 0 || len(m.Origins) > MaxURIs:
		return bad("1 to %d origins", MaxURIs)
	case len(m.Redirects) == 0 || len(m.Redirects) > MaxURIs:
		return bad("1 to %d redirect_uris", MaxURIs)
	case len(m.PostLogout) > MaxURIs:
		return bad("at most %d post_logout_redirect_uris", MaxURIs)
	}
	for _, o := range m.Origins {
		u, err := webURL(o)
		if err != nil || u.Path != "" || u.RawQuery != "" || o != u.Scheme+"://"+u.Host {
			return bad("origin %q must be scheme://host[:port], nothing else", o)
		}
	}
	for _, list := range [][]string{m.Redirects, m.PostLogout, {m.LaunchURL}} {
		for _, r := range list {
			if err := m.underOrigin(r); err != nil {
				return bad("%v", err)
			}
		}
	}
	if _, err := webURL(m.Icon); err != nil {
		return bad("icon: %v", err)
	}
	if !slices.Contains(m.Scopes, ScopeOpenID) {
		return bad("scopes must include openid")
	}
	seen := map[string]bool{}
	for _, s := range m.Scopes {
		if !slices.Contains(AllScopes, s) {
			return bad("unknown scope %q", s)
		}
		if seen[s] {
			return bad("scope %q named twice", s)
		}
		seen[s] = true
	}
	return nil
}

// underOrigin checks that u is an absolute URL without fragment under one
// of the manifest's origins.
func (m *Manifest) underOrigin(s string) error {
	u, err := webURL(s)
	if err != nil {
		return err
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		return fmt.Errorf("%q has a fragment", s)
	}
	if !slices.Contains(m.Origins, u.Scheme+"://"+u.Host) {
		return fmt.Errorf("%q is not under one of the origins", s)
	}
	return nil
}

// webURL parses an absolute https URL, or http on a loopback host (a
// developer's machine, tests).
func webURL(s string) (*url.URL, error) {
	if s == "" || len(s) > MaxURI {
		return nil, fmt.Errorf("a URL of 1 to %d bytes is required", MaxURI)
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || u.Opaque != "" {
		return nil, fmt.Errorf("%q is not an absolute URL", s)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && (u.Hostname() == "localhost" || u.Hostname() == "127.0.0.1" || u.Hostname() == "::1"):
	default:
		return nil, fmt.Errorf("%q: https is required (http only on a loopback host)", s)
	}
	return u, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// VerifiedManifest is a manifest whose signature and certificates checked
// out.
type VerifiedManifest struct {
	Manifest Manifest
	Signer   orgsig.Signed
	JWS      string
}

// VerifyManifest checks a manifest JWS offline: the signature by the x5c
// device certificate, that certificate and the membership certificate in
// kanal_membership chaining to roots at the manifest's issued_at and
// naming the same device, the membership being for the manifest's
// organisation, and the manifest's fields. It does not check revocation,
// which the registry checks against identity's records.
func VerifyManifest(s string, roots *x509.CertPool) (*VerifiedManifest, error) {
	var m Manifest
	sig, err := orgsig.VerifyMember(s, MaxManifest, TypeManifest, roots, func(payload []byte) (time.Time, error) {
		if err := orgsig.DecodeStrict(payload, &m); err != nil {
			return time.Time{}, err
		}
		if m.IssuedAt.IsZero() {
			return time.Time{}, errors.New("issued_at is required")
		}
		return m.IssuedAt, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidManifest, err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if sig.Membership.OrgID != m.OrgID {
		return nil, fmt.Errorf("%w: signed for organisation %s, names %s", ErrInvalidManifest, sig.Membership.OrgID, m.OrgID)
	}
	return &VerifiedManifest{Manifest: m, Signer: *sig, JWS: s}, nil
}

// SignManifest validates m and signs it as the member's device.
func SignManifest(m Manifest, member orgsig.Member, roots *x509.CertPool) (string, error) {
	if err := m.Validate(); err != nil {
		return "", err
	}
	payload, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("miniapps: encode manifest: %w", err)
	}
	jws, _, err := orgsig.SignMember(member, roots, m.IssuedAt, TypeManifest, payload)
	return jws, err
}
