package push

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// NewHTTPClient returns the client pushes are sent with: TLS verified
// against roots (nil: the system's roots), no redirects followed, and a
// dialer that refuses addresses that are not public unless allowed names
// them literally — an endpoint is a URL a device chose, and kanal must not
// become a way to reach the operator's internal network.
func NewHTTPClient(roots *x509.CertPool, allowed HostList) *http.Client {
	dialer := &net.Dialer{
		Timeout: 10 * time.Second,
		Control: func(network, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			ip, err := netip.ParseAddr(host)
			if err != nil {
				return fmt.Errorf("push: dial %s: not an IP address", address)
			}
			if !publicAddr(ip) && !allowed.names(ip) {
				return fmt.Errorf("push: dial %s: address is not public", address)
			}
			return nil
		},
	}
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         dialer.DialContext,
			TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout: 10 * time.Second,
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 8,
			IdleConnTimeout:     90 * time.Second,
		},
		// A push service answers; it does not redirect. Following one
		// would send the VAPID token and payload somewhere else.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
