package identity

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"sync"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/web"
)

// Revocation is published three ways, none of which signs per request:
//
//   - the device CRL (GET /v1/directory/crl) and each organisation's
//     membership CRL (GET /v1/directory/orgs/{id}/crl) are signed once per
//     revocation generation — a counter that database triggers bump in the
//     transaction that revokes — stored in identity_crls for all nodes, and
//     served from memory while the generation is unchanged and the list is
//     younger than CRLRefresh;
//   - the status of one device certificate (POST /v1/ocsp, RFC 6960) is
//     signed when its row changes or the cached answer is older than
//     StatusRefresh, and costs one indexed lookup otherwise. Its size does
//     not depend on how many certificates were ever revoked, which is what
//     clients check before trusting a peer.
//
// A node reads the generation (or the certificate's row) on every request,
// so it never serves a list older than a revocation it can see.

// Scopes of the revocation lists.
const (
	scopeDevices   = "device"
	scopeOrgPrefix = "org:"
)

type cachedList struct {
	generation int64
	number     int64
	thisUpdate time.Time
	der        []byte
	etag       string
}

type cachedStatus struct {
	revokedAt  int64 // 0: not revoked
	thisUpdate time.Time
	der        []byte
}

// revocationCache is a node's copy of what identity_crls holds, and the
// status answers it signed. The zero value is ready to use.
type revocationCache struct {
	mu       sync.Mutex
	lists    map[string]*cachedList
	statuses map[string]*cachedStatus

	// signMu lets one request per node sign at a time; the others wait
	// and then serve what it stored.
	signMu sync.Mutex
}

func (c *revocationCache) list(scope string) *cachedList {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lists[scope]
}

func (c *revocationCache) putList(scope string, l *cachedList) {
	c.mu.Lock()
	defer c.mu.Unlock()
	putBounded(&c.lists, MaxCachedLists, scope, l)
}

func (c *revocationCache) status(serial string) *cachedStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.statuses[serial]
}

func (c *revocationCache) putStatus(serial string, st *cachedStatus) {
	c.mu.Lock()
	defer c.mu.Unlock()
	putBounded(&c.statuses, MaxCachedStatuses, serial, st)
}

// putBounded stores v under k in *m, making the map if needed, and first
// drops an arbitrary entry when it holds max: a cache miss costs one
// signature, so which entry goes matters little, and the memory is bounded.
func putBounded[V any](m *map[string]V, max int, k string, v V) {
	if *m == nil {
		*m = map[string]V{}
	}
	if _, ok := (*m)[k]; !ok && len(*m) >= max {
		for old := range *m {
			delete(*m, old)
			break
		}
	}
	(*m)[k] = v
}

func (l *cachedList) fresh(generation int64, now time.Time) bool {
	return l != nil && l.generation == generation && now.Sub(l.thisUpdate) < CRLRefresh && !l.thisUpdate.After(now.Add(time.Minute))
}

// generation returns the revocation generation of scope (0 before the
// first revocation).
func (s *Service) generation(ctx context.Context, scope string) (int64, error) {
	var g int64
	err := s.db.QueryRow(ctx, `SELECT generation FROM identity_revocation_generations WHERE scope = $1`, scope).Scan(&g)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return g, err
}

// signList signs a list of entries with a CRL number, valid from now to next.
type signList func(entries []ca.Revoked, number *big.Int, now, next time.Time) ([]byte, error)

// loadEntries reads the revoked, unexpired certificates of a scope.
type loadEntries func(ctx context.Context, now time.Time) ([]ca.Revoked, error)

// revocationList returns the current list of scope: the cached one if it
// is of the current generation and fresh, else the one another node
// stored, else a newly signed one.
func (s *Service) revocationList(ctx context.Context, scope string, load loadEntries, sign signList) (*cachedList, error) {
	// The generation is read before the entries, so a stored list never
	// claims a newer generation than its content.
	gen, err := s.generation(ctx, scope)
	if err != nil {
		return nil, err
	}
	if l := s.rev.list(scope); l.fresh(gen, s.now()) {
		return l, nil
	}
	s.rev.signMu.Lock()
	defer s.rev.signMu.Unlock()
	for range 3 {
		now := s.now()
		stored, err := s.storedList(ctx, scope)
		if err != nil {
			return nil, err
		}
		if stored.fresh(gen, now) {
			s.rev.putList(scope, stored)
			return stored, nil
		}
		entries, err := load(ctx, now)
		if err != nil {
			return nil, err
		}
		number := int64(1)
		if stored != nil {
			number = stored.number + 1
		}
		der, err := sign(entries, big.NewInt(number), now, now.Add(CRLLifetime))
		if err != nil {
			return nil, err
		}
		// Compare and swap on the CRL number: two nodes that sign at once
		// must not publish two lists under one number; the loser serves
		// the winner's list.
		var res sql.Result
		if stored == nil {
			res, err = s.db.Exec(ctx, `INSERT INTO identity_crls (scope, generation, number, this_update, der) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (scope) DO NOTHING`, scope, gen, number, now.Unix(), der)
		} else {
			res, err = s.db.Exec(ctx, `UPDATE identity_crls SET generation = $1, number = $2, this_update = $3, der = $4
				WHERE scope = $5 AND number = $6`, gen, number, now.Unix(), der, scope, stored.number)
		}
		if err != nil {
			return nil, err
		}
		if n, err := res.RowsAffected(); err != nil {
			return nil, err
		} else if n == 1 {
			l := newCachedList(gen, number, unixTime(now.Unix()), der)
			s.rev.putList(scope, l)
			return l, nil
		}
	}
	return nil, errors.New("identity: revocation list: lost the race to store it three times")
}

func newCachedList(gen, number int64, this time.Time, der []byte) *cachedList {
	h := sha256.Sum256(der)
	return &cachedList{generation: gen, number: number, thisUpdate: this, der: der, etag: `"` + hex.EncodeToString(h[:16]) + `"`}
}

func (s *Service) storedList(ctx context.Context, scope string) (*cachedList, error) {
	var gen, number, this int64
	var der []byte
	err := s.db.QueryRow(ctx, `SELECT generation, number, this_update, der FROM identity_crls WHERE scope = $1`, scope).
		Scan(&gen, &number, &this, &der)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	return newCachedList(gen, number, unixTime(this), der), nil
}

func revokedEntries(ctx context.Context, s *Service, query string, args ...any) ([]ca.Revoked, error) {
	rows, err := s.db.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var entries []ca.Revoked
	for rows.Next() {
		var serial string
		var at int64
		if err := rows.Scan(&serial, &at); err != nil {
			return nil, err
		}
		n, ok := new(big.Int).SetString(serial, 10)
		if !ok {
			return nil, errors.New("identity: bad stored serial")
		}
		entries = append(entries, ca.Revoked{Serial: n, At: unixTime(at)})
	}
	return entries, rows.Err()
}

// CRL returns the deployment CA's revocation list (DER) of revoked device
// certificates that have not yet expired. It is signed once per
// revocation and then served as stored, by every node.
func (s *Service) CRL(ctx context.Context) ([]byte, error) {
	l, err := s.deviceCRL(ctx)
	if err != nil {
		return nil, err
	}
	return l.der, nil
}

func (s *Service) deviceCRL(ctx context.Context) (*cachedList, error) {
	return s.revocationList(ctx, scopeDevices, func(ctx context.Context, now time.Time) ([]ca.Revoked, error) {
		return revokedEntries(ctx, s, `SELECT serial, revoked_at FROM identity_device_certs
			WHERE revoked_at IS NOT NULL AND not_after > $1 ORDER BY serial`, now.Unix())
	}, s.ca.RevocationList)
}

// OrgCRL returns the revocation list (DER) of an organisation's membership
// certificates, signed by the organisation's own authority key (the key
// that issued them): members who left, or whose role changed, or whose
// device was revoked.
func (s *Service) OrgCRL(ctx context.Context, orgID string) ([]byte, error) {
	l, err := s.orgCRL(ctx, orgID)
	if err != nil {
		return nil, err
	}
	return l.der, nil
}

func (s *Service) orgCRL(ctx context.Context, orgID string) (*cachedList, error) {
	o, err := s.loadOrgRead(ctx, orgID)
	if err != nil {
		return nil, err
	}
	if !o.verified.Valid || o.certPEM == "" {
		return nil, errNoOrg
	}
	sign := func(entries []ca.Revoked, number *big.Int, now, next time.Time) ([]byte, error) {
		keyPEM, err := s.unseal(o.sealed, o.id)
		if err != nil {
			return nil, err
		}
		auth, err := ca.ParseOrgAuthority([]byte(o.certPEM), keyPEM)
		if err != nil {
			return nil, err
		}
		return auth.RevocationList(entries, number, now, next)
	}
	return s.revocationList(ctx, scopeOrgPrefix+o.id, func(ctx context.Context, now time.Time) ([]ca.Revoked, error) {
		return revokedEntries(ctx, s, `SELECT serial, revoked_at FROM identity_memberships
			WHERE org_id = $1 AND revoked_at IS NOT NULL AND not_after > $2 ORDER BY serial`, o.id, now.Unix())
	}, sign)
}

func writeCRL(w http.ResponseWriter, r *http.Request, l *cachedList) {
	w.Header().Set("ETag", l.etag)
	w.Header().Set("Cache-Control", "no-cache")
	if r.Header.Get("If-None-Match") == l.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	w.WriteHeader(http.StatusOK)
	w.Write(l.der)
}

func (s *Service) handleDirectoryCRL(w http.ResponseWriter, r *http.Request) error {
	l, err := s.deviceCRL(r.Context())
	if err != nil {
		return err
	}
	writeCRL(w, r, l)
	return nil
}

func (s *Service) handleDirectoryOrgCRL(w http.ResponseWriter, r *http.Request) error {
	l, err := s.orgCRL(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeCRL(w, r, l)
	return nil
}

// errUnknownSerial: the responder answers "unauthorized", unsigned.
var errUnknownSerial = errors.New("identity: no device certificate with this serial")

// MembershipStatus returns the status (a DER OCSP response signed by the
// organisation's key) of the membership certificate with serial that
// orgID issued. A serial the organisation never issued gives
// errUnknownSerial.
func (s *Service) MembershipStatus(ctx context.Context, o orgRow, serial *big.Int) ([]byte, error) {
	var revoked sql.NullInt64
	err := s.db.QueryRow(ctx, `SELECT revoked_at FROM identity_memberships WHERE serial = $1 AND org_id = $2`, serial.String(), o.id).Scan(&revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errUnknownSerial
	} else if err != nil {
		return nil, err
	}
	key := scopeOrgPrefix + o.id + "/" + serial.String()
	now := s.now()
	if c := s.rev.status(key); c != nil && c.revokedAt == revoked.Int64 && now.Sub(c.thisUpdate) < StatusRefresh && !c.thisUpdate.After(now.Add(time.Minute)) {
		return c.der, nil
	}
	keyPEM, err := s.unseal(o.sealed, o.id)
	if err != nil {
		return nil, err
	}
	auth, err := ca.ParseOrgAuthority([]byte(o.certPEM), keyPEM)
	if err != nil {
		return nil, err
	}
	var at *time.Time
	if revoked.Valid {
		t := unixTime(revoked.Int64)
		at = &t
	}
	der, err := auth.SignStatus(serial, at, now, now.Add(StatusLifetime))
	if err != nil {
		return nil, err
	}
	s.rev.putStatus(key, &cachedStatus{revokedAt: revoked.Int64, thisUpdate: now.UTC().Truncate(time.Second), der: der})
	return der, nil
}

// CertificateStatus returns the signed status (a DER OCSP response) of the
// device certificate with serial. A serial kanal never issued gives
// errUnknownSerial.
func (s *Service) CertificateStatus(ctx context.Context, serial *big.Int) ([]byte, error) {
	key := serial.String()
	var revoked sql.NullInt64
	err := s.db.QueryRow(ctx, `SELECT revoked_at FROM identity_device_certs WHERE serial = $1`, key).Scan(&revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errUnknownSerial
	} else if err != nil {
		return nil, err
	}
	now := s.now()
	if c := s.rev.status(key); c != nil && c.revokedAt == revoked.Int64 && now.Sub(c.thisUpdate) < StatusRefresh && !c.thisUpdate.After(now.Add(time.Minute)) {
		return c.der, nil
	}
	var at *time.Time
	if revoked.Valid {
		t := unixTime(revoked.Int64)
		at = &t
	}
	der, err := s.ca.SignStatus(serial, at, now, now.Add(StatusLifetime))
	if err != nil {
		return nil, err
	}
	s.rev.putStatus(key, &cachedStatus{revokedAt: revoked.Int64, thisUpdate: now.UTC().Truncate(time.Second), der: der})
	return der, nil
}

// handleOCSP answers an RFC 6960 request for a device certificate, sent
// by POST (as openssl and the kanal clients do).
func (s *Service) handleOCSP(w http.ResponseWriter, r *http.Request) error {
	body, err := readStatusRequest(w, r)
	if err != nil {
		return err
	}
	der, err := s.answerStatus(body, s.ca.Certificate(), func(serial *big.Int) ([]byte, error) {
		return s.CertificateStatus(r.Context(), serial)
	})
	if err != nil {
		return err
	}
	writeStatus(w, der)
	return nil
}

// handleOrgOCSP answers an RFC 6960 request for a membership certificate
// of the organisation, signed by the organisation's key.
func (s *Service) handleOrgOCSP(w http.ResponseWriter, r *http.Request) error {
	body, err := readStatusRequest(w, r)
	if err != nil {
		return err
	}
	o, err := s.loadOrgRead(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if !o.verified.Valid || o.certPEM == "" {
		return errNoOrg
	}
	blk, _ := pem.Decode([]byte(o.certPEM))
	if blk == nil {
		return errors.New("identity: stored organisation certificate is not PEM")
	}
	orgCert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return err
	}
	der, err := s.answerStatus(body, orgCert, func(serial *big.Int) ([]byte, error) {
		return s.MembershipStatus(r.Context(), o, serial)
	})
	if err != nil {
		return err
	}
	writeStatus(w, der)
	return nil
}

func readStatusRequest(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "application/ocsp-request" {
		return nil, web.Errorf(http.StatusUnsupportedMediaType, web.TypeUnsupportedMedia, "Not an OCSP request",
			"the body must be application/ocsp-request, got %q", ct)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, ca.MaxStatusRequestSize))
	if err != nil {
		return nil, web.Errorf(http.StatusRequestEntityTooLarge, web.TypeTooLarge, "Request too large",
			"an OCSP request is at most %d bytes", ca.MaxStatusRequestSize)
	}
	return body, nil
}

// answerStatus parses a request for issuer's certificates and answers it
// with status, or with the unsigned "unauthorized" for another issuer or
// an unknown serial.
func (s *Service) answerStatus(body []byte, issuer *x509.Certificate, status func(*big.Int) ([]byte, error)) ([]byte, error) {
	serial, err := ca.ParseStatusRequest(body, issuer)
	switch {
	case errors.Is(err, ca.ErrWrongIssuer):
		return ca.UnauthorizedStatus(), nil
	case err != nil:
		return nil, web.Errorf(http.StatusBadRequest, web.TypeBadRequest, "Malformed OCSP request", "%v", err)
	}
	der, err := status(serial)
	if errors.Is(err, errUnknownSerial) {
		return ca.UnauthorizedStatus(), nil
	} else if err != nil {
		return nil, fmt.Errorf("identity: certificate status: %w", err)
	}
	return der, nil
}

func writeStatus(w http.ResponseWriter, der []byte) {
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	w.Write(der)
}

// ErrNotCurrent is wrapped by CheckDeviceCertificate and CheckMembership
// when a certificate may not sign now.
var ErrNotCurrent = errors.New("identity: certificate not current")

// CheckDeviceCertificate returns nil if serial names a device certificate
// kanal issued that is unexpired, not revoked, and of a device that is not
// revoked. Documents a server registers are checked with it: a signature
// made at a signer-chosen time proves nothing about now.
func (s *Service) CheckDeviceCertificate(ctx context.Context, serial *big.Int) error {
	var notAfter int64
	var certRevoked, devRevoked sql.NullInt64
	err := s.db.QueryRow(ctx, `SELECT c.not_after, c.revoked_at, d.revoked_at FROM identity_device_certs c
		JOIN identity_devices d ON d.id = c.device_id WHERE c.serial = $1`, serial.String()).Scan(&notAfter, &certRevoked, &devRevoked)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%w: no device certificate %s", ErrNotCurrent, serial)
	case err != nil:
		return err
	case certRevoked.Valid || devRevoked.Valid:
		return fmt.Errorf("%w: device certificate %s is revoked", ErrNotCurrent, serial)
	case s.now().Unix() >= notAfter:
		return fmt.Errorf("%w: device certificate %s has expired", ErrNotCurrent, serial)
	}
	return nil
}

// CheckMembership returns nil if the membership certificate with serial
// is one kanal issued to deviceID of accountID in orgID, unexpired and not
// revoked, and the account is a member of the organisation with role now.
func (s *Service) CheckMembership(ctx context.Context, orgID, accountID, deviceID, role string, serial *big.Int) error {
	var notAfter int64
	var revoked sql.NullInt64
	var current sql.NullString
	err := s.db.QueryRow(ctx, `SELECT ms.not_after, ms.revoked_at, m.role FROM identity_memberships ms
		LEFT JOIN identity_members m ON m.org_id = ms.org_id AND m.account_id = ms.account_id
		WHERE ms.serial = $1 AND ms.org_id = $2 AND ms.account_id = $3 AND ms.device_id = $4`,
		serial.String(), orgID, accountID, deviceID).Scan(&notAfter, &revoked, &current)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%w: no such membership certificate of %s", ErrNotCurrent, orgID)
	case err != nil:
		return err
	case revoked.Valid:
		return fmt.Errorf("%w: the membership certificate was revoked", ErrNotCurrent)
	case !current.Valid:
		return fmt.Errorf("%w: %s is no longer a member of %s", ErrNotCurrent, accountID, orgID)
	case current.String != role:
		return fmt.Errorf("%w: the member's role is now %s, not %s", ErrNotCurrent, current.String, role)
	case s.now().Unix() >= notAfter:
		return fmt.Errorf("%w: the membership certificate has expired", ErrNotCurrent)
	}
	return nil
}
