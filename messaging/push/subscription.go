package push

import (
	"crypto/ecdh"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
)

// Errors callers branch on.
var (
	ErrInvalid        = errors.New("push: invalid subscription")
	ErrHostNotAllowed = errors.New("push: push service host not allowed")
	ErrNoSubscription = errors.New("push: no subscription")
)

// SubscriptionRequest is a browser's PushSubscription.toJSON(), the body
// of PUT /v1/push/subscription.
type SubscriptionRequest struct {
	Endpoint string `json:"endpoint"`
	// ExpirationTime is what browsers send (usually null); kanal does not
	// use it: a push service that has expired a subscription answers 404
	// or 410, and that removes it.
	ExpirationTime *float64         `json:"expirationTime,omitempty"`
	Keys           SubscriptionKeys `json:"keys"`
}

// SubscriptionKeys are the subscription's keys, base64url as
// PushSubscription.getKey() gives them (padding optional).
type SubscriptionKeys struct {
	P256dh string `json:"p256dh"`
	Auth   string `json:"auth"`
}

// Subscription is a validated subscription in canonical form (base64url
// without padding).
type Subscription struct {
	Endpoint string `json:"endpoint"`
	P256dh   string `json:"p256dh"`
	Auth     string `json:"auth"`
}

// HostList is the operator's allow-list of push service hosts: exact host
// names or IP addresses, or "*.example.com" for any subdomain. An empty
// list allows every public host.
type HostList []string

// ParseHostList reads a comma-separated list of hosts.
func ParseHostList(s string) (HostList, error) {
	var out HostList
	for _, h := range strings.Split(s, ",") {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "" {
			continue
		}
		name := strings.TrimPrefix(h, "*.")
		if strings.ContainsAny(name, "*/:@ ") && net.ParseIP(name) == nil {
			return nil, fmt.Errorf("%q is not a host name, an IP address or *.domain", h)
		}
		out = append(out, h)
	}
	return out, nil
}

// allows reports whether host (lower case, no port) is on the list.
func (l HostList) allows(host string) bool {
	for _, h := range l {
		if h == host {
			return true
		}
		if suffix, ok := strings.CutPrefix(h, "*"); ok && strings.HasSuffix(host, suffix) && len(host) > len(suffix) {
			return true
		}
	}
	return false
}

// names reports whether the list names ip literally; only then may kanal
// send to an address that is not public. "localhost" on the list names the
// loopback addresses.
func (l HostList) names(ip netip.Addr) bool {
	for _, h := range l {
		if h == "localhost" && ip.Unmap().IsLoopback() {
			return true
		}
		if a, err := netip.ParseAddr(h); err == nil && a.Unmap() == ip.Unmap() {
			return true
		}
	}
	return false
}

// notPublic are the IPv4 and IPv6 ranges beyond what netip's predicates
// cover that are not the public internet (RFC 6890's special-purpose
// registries): shared address space behind carrier NAT, benchmarking,
// documentation, reserved and broadcast, and IPv6 prefixes that are local
// or cannot be routed to a push service.
var notPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // shared address space (RFC 6598)
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"), // benchmarking (RFC 2544)
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved, with 255.255.255.255
	netip.MustParsePrefix("100::/64"),       // discard-only
	netip.MustParsePrefix("2001::/32"),      // Teredo: embeds IPv4 addresses of its own
	netip.MustParsePrefix("2001:db8::/32"),  // documentation
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64 (RFC 8215)
}

// embeddedIPv4 returns the IPv4 address inside an IPv6 address that
// carries one to the IPv4 internet: NAT64's well-known prefix
// 64:ff9b::/96, 6to4's 2002::/16 and the deprecated IPv4-compatible ::/96.
func embeddedIPv4(ip netip.Addr) (netip.Addr, bool) {
	if !ip.Is6() || ip.Is4In6() {
		return netip.Addr{}, false
	}
	b := ip.As16()
	switch {
	case netip.MustParsePrefix("64:ff9b::/96").Contains(ip), netip.MustParsePrefix("::/96").Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case netip.MustParsePrefix("2002::/16").Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

// publicAddr reports whether ip is an address on the public internet: the
// push service a browser hands out never lives on loopback, a private
// network or a link-local address, and kanal must not be used to reach one
// — also not through an IPv6 form that embeds such an IPv4 address.
func publicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if v4, ok := embeddedIPv4(ip); ok {
		return publicAddr(v4)
	}
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() ||
		ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return false
	}
	for _, p := range notPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// Validate checks r and returns its canonical form. Nothing about the
// endpoint is fetched: the checks are syntax, the allow-list and the keys.
func (r *SubscriptionRequest) Validate(allowed HostList) (Subscription, error) {
	ep, err := validEndpoint(r.Endpoint, allowed)
	if err != nil {
		return Subscription{}, err
	}
	p, err := decodeKey(r.Keys.P256dh)
	if err != nil || len(p) != p256dhLen {
		return Subscription{}, fmt.Errorf("%w: keys.p256dh must be a base64url uncompressed P-256 public key (%d bytes)", ErrInvalid, p256dhLen)
	}
	if _, err := ecdh.P256().NewPublicKey(p); err != nil {
		return Subscription{}, fmt.Errorf("%w: keys.p256dh is not a point on P-256", ErrInvalid)
	}
	a, err := decodeKey(r.Keys.Auth)
	if err != nil || len(a) != authLen {
		return Subscription{}, fmt.Errorf("%w: keys.auth must be %d bytes, base64url", ErrInvalid, authLen)
	}
	enc := base64.RawURLEncoding
	return Subscription{Endpoint: ep, P256dh: enc.EncodeToString(p), Auth: enc.EncodeToString(a)}, nil
}

func validEndpoint(raw string, allowed HostList) (string, error) {
	if raw == "" {
		return "", fmt.Errorf("%w: endpoint is required", ErrInvalid)
	}
	if len(raw) > MaxEndpoint {
		return "", fmt.Errorf("%w: endpoint longer than %d bytes", ErrInvalid, MaxEndpoint)
	}
	for _, c := range []byte(raw) {
		if c <= ' ' || c >= 0x7f {
			return "", fmt.Errorf("%w: endpoint must be printable ASCII without spaces", ErrInvalid)
		}
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "", fmt.Errorf("%w: endpoint is not a URL", ErrInvalid)
	case u.Scheme != "https":
		return "", fmt.Errorf("%w: endpoint must be an https URL", ErrInvalid)
	case u.Host == "" || u.Opaque != "":
		return "", fmt.Errorf("%w: endpoint has no host", ErrInvalid)
	case u.User != nil:
		return "", fmt.Errorf("%w: endpoint must not carry user information", ErrInvalid)
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "", fmt.Errorf("%w: endpoint must not have a fragment", ErrInvalid)
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return "", fmt.Errorf("%w: endpoint has no host", ErrInvalid)
	}
	if len(allowed) > 0 && !allowed.allows(host) {
		return "", fmt.Errorf("%w: %s", ErrHostNotAllowed, host)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if !publicAddr(ip) && !allowed.names(ip) {
			return "", fmt.Errorf("%w: endpoint address %s is not public", ErrHostNotAllowed, host)
		}
	} else if (host == "localhost" || strings.HasSuffix(host, ".localhost")) && !slices.Contains(allowed, host) {
		return "", fmt.Errorf("%w: endpoint host %s is local", ErrHostNotAllowed, host)
	}
	return raw, nil
}

// decodeKey decodes base64url with or without padding; the standard
// alphabet is refused, as browsers never produce it.
func decodeKey(s string) ([]byte, error) {
	if len(s) > 128 {
		return nil, errors.New("too long")
	}
	if strings.Contains(s, "=") {
		return base64.URLEncoding.Strict().DecodeString(s)
	}
	return base64.RawURLEncoding.Strict().DecodeString(s)
}
