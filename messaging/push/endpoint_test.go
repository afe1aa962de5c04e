package push_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kanal-server/kanal/messaging/push"
)

// TestEndpointAddressesNotPublic: an endpoint may not name an address that
// is not on the public internet, in any of the forms that reach one —
// carrier NAT, benchmarking and reserved ranges, broadcast, and IPv6
// addresses that embed a private IPv4 address.
func TestEndpointAddressesNotPublic(t *testing.T) {
	keys := validRequest(t)
	for _, host := range []string{
		"127.0.0.1", "10.1.2.3", "192.168.1.1", "169.254.1.1",
		"100.64.0.1", "100.127.255.254", "198.18.0.1", "198.19.255.1",
		"240.0.0.1", "255.255.255.255", "0.1.2.3", "192.0.2.10",
		"[::1]", "[fe80::1]", "[fc00::1]",
		"[64:ff9b::a00:1]",   // NAT64 of 10.0.0.1
		"[64:ff9b::7f00:1]",  // NAT64 of 127.0.0.1
		"[2002:a00:1::1]",    // 6to4 of 10.0.0.1
		"[2002:c0a8:101::1]", // 6to4 of 192.168.1.1
		"[::a00:1]",          // IPv4-compatible 10.0.0.1
		"[::ffff:10.0.0.1]",  // IPv4-mapped
		"[2001::1]",          // Teredo
		"[64:ff9b:1::1]",     // local-use NAT64
	} {
		r := keys
		r.Endpoint = "https://" + host + "/push/x"
		if _, err := r.Validate(nil); !errors.Is(err, push.ErrHostNotAllowed) {
			t.Errorf("%s: got %v, want refused as not public", host, err)
		}
	}
	for _, host := range []string{"142.250.0.1", "[2a00:1450::1]", "[64:ff9b::8efa:1]" /* NAT64 of 142.250.0.1 */} {
		r := keys
		r.Endpoint = "https://" + host + "/push/x"
		if _, err := r.Validate(nil); err != nil {
			t.Errorf("%s: public address refused: %v", host, err)
		}
	}
}

// TestLocalhostAllowed: KANAL_PUSH_HOSTS=localhost allows a push service on
// this machine by that name, as the docs say; without it, it is refused.
func TestLocalhostAllowed(t *testing.T) {
	r := validRequest(t)
	r.Endpoint = "https://localhost:8443/push/x"
	if _, err := r.Validate(nil); !errors.Is(err, push.ErrHostNotAllowed) {
		t.Fatalf("localhost accepted without being listed: %v", err)
	}
	if _, err := r.Validate(push.HostList{"localhost"}); err != nil {
		t.Fatalf("localhost refused although listed: %v", err)
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(201) }))
	defer srv.Close()
	pool := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	url := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	if _, err := push.NewHTTPClient(pool, nil).Post(url, "text/plain", nil); err == nil || !strings.Contains(err.Error(), "not public") {
		t.Fatalf("loopback reached by name without being allowed: %v", err)
	}
	// httptest's certificate names 127.0.0.1 and example.com, not localhost:
	// the dial must get through the guard and then fail only on the name.
	_, err := push.NewHTTPClient(pool, push.HostList{"localhost"}).Post(url, "text/plain", nil)
	if err == nil || strings.Contains(err.Error(), "not public") {
		t.Fatalf("dial to a listed localhost: %v, want past the address guard", err)
	}
}

// validRequest is a subscription whose keys are valid, for endpoint tests.
func validRequest(t *testing.T) push.SubscriptionRequest {
	t.Helper()
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, 16)
	rand.Read(auth)
	enc := base64.RawURLEncoding
	return push.SubscriptionRequest{Keys: push.SubscriptionKeys{P256dh: enc.EncodeToString(priv.PublicKey().Bytes()), Auth: enc.EncodeToString(auth)}}
}
