package identity

import (
	"context"
	"database/sql"
	"errors"
	"net/http"

	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/keys/transparency"
)

func (s *Service) handleDirectoryDevices(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	account := r.PathValue("id")
	var one int
	err := s.db.QueryRow(ctx, `SELECT 1 FROM identity_accounts WHERE id = $1`, account).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return web.Errorf(http.StatusNotFound, web.TypeNotFound, "No such account", "there is no account with this id")
	} else if err != nil {
		return err
	}
	rows, err := s.db.Query(ctx, `SELECT id, cert_pem, revoked_at FROM identity_devices WHERE account_id = $1 ORDER BY created_at, id`, account)
	if err != nil {
		return err
	}
	defer rows.Close()
	out := DirectoryDevices{Devices: []DirectoryDevice{}}
	for rows.Next() {
		var d DirectoryDevice
		var revoked sql.NullInt64
		if err := rows.Scan(&d.DeviceID, &d.Certificate, &revoked); err != nil {
			return err
		}
		d.Status, d.RevokedAt = StatusActive, nullTime(revoked)
		if revoked.Valid {
			d.Status = StatusRevoked
		}
		out.Devices = append(out.Devices, d)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	rows.Close()
	if s.tlog != nil {
		salt, err := s.tlog.AccountSalt(ctx, account)
		if err != nil {
			return err
		}
		out.LogSalt = salt[:]
	}
	// The entries are looked up after the bindings were read, so the
	// newest checkpoint covers each (they commit together).
	for i := range out.Devices {
		d := &out.Devices[i]
		kind := transparency.KindDevice
		if d.Status == StatusRevoked {
			kind = transparency.KindDeviceRevoked
		}
		if d.Log, err = s.attach(ctx, kind, d.DeviceID, d.Certificate, ""); err != nil {
			return err
		}
	}
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Service) handleDirectoryOrg(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	o, err := s.loadOrgRead(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	out := DirectoryOrg{OrgID: o.id, Name: o.name, Kind: o.kind, Verified: o.verified.Valid, Certificate: o.certPEM, Members: []DirectoryMember{}}
	rows, err := s.db.Query(ctx, `SELECT m.account_id, m.role, d.id, d.cert_pem, ms.cert_pem
		FROM identity_members m
		LEFT JOIN identity_memberships ms ON ms.org_id = m.org_id AND ms.account_id = m.account_id AND ms.revoked_at IS NULL
		LEFT JOIN identity_devices d ON d.id = ms.device_id AND d.revoked_at IS NULL
		WHERE m.org_id = $1 ORDER BY m.created_at, m.account_id, d.id, ms.not_after DESC`, o.id)
	if err != nil {
		return err
	}
	defer rows.Close()
	seen := map[string]bool{}
	for rows.Next() {
		var account, role string
		var dev, devPEM, memPEM sql.NullString
		if err := rows.Scan(&account, &role, &dev, &devPEM, &memPEM); err != nil {
			return err
		}
		if n := len(out.Members); n == 0 || out.Members[n-1].AccountID != account {
			out.Members = append(out.Members, DirectoryMember{AccountID: account, Role: role, Devices: []MemberDevice{}})
		}
		// Only the newest membership certificate of each device is listed.
		if dev.Valid && devPEM.Valid && !seen[dev.String] {
			seen[dev.String] = true
			m := &out.Members[len(out.Members)-1]
			m.Devices = append(m.Devices, MemberDevice{DeviceID: dev.String, Certificate: devPEM.String, MembershipCertificate: memPEM.String})
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	rows.Close()
	for i := range out.Members {
		for j := range out.Members[i].Devices {
			d := &out.Members[i].Devices[j]
			if d.MembershipCertificate == "" {
				continue
			}
			if d.Log, err = s.attach(ctx, transparency.KindMembership, d.DeviceID, d.MembershipCertificate, o.id); err != nil {
				return err
			}
		}
	}
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Service) loadOrgRead(ctx context.Context, id string) (orgRow, error) {
	var o orgRow
	err := s.db.QueryRow(ctx, `SELECT id, name, kind, cert_pem, key_sealed, created_at, verified_at FROM identity_orgs WHERE id = $1`, id).
		Scan(&o.id, &o.name, &o.kind, &o.certPEM, &o.sealed, &o.created, &o.verified)
	if errors.Is(err, sql.ErrNoRows) {
		return o, errNoOrg
	}
	return o, err
}

func (s *Service) handleDirectoryCA(w http.ResponseWriter, r *http.Request) error {
	web.WriteJSON(w, http.StatusOK, DirectoryCA{Certificate: string(s.ca.RootPEM()), Intermediates: s.intermediatesPEM()})
	return nil
}

// intermediatesPEM is the CA's issuing and retired intermediates in PEM,
// nil when the root issues.
func (s *Service) intermediatesPEM() []string {
	var out []string
	for _, c := range s.ca.Intermediates() {
		out = append(out, pemCert(c.Raw))
	}
	return out
}
