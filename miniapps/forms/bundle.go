package forms

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/kanal-server/kanal/identity/orgsig"
)

// bundlePayload is what a bundle's JWS signs.
type bundlePayload struct {
	Version    int       `json:"v"` // 1
	ExportedAt time.Time `json:"exported_at"`
	Templates  []Signed  `json:"templates"`
}

// Imported is one template of a verified bundle.
type Imported struct {
	Signed   Signed
	Verified *Verified
}

// Descend returns what a fork or new version of the verified template s
// names and carries: its Parent (id, version, hash and the fingerprint of
// caDER, the CA s chains to) and its lineage (s in front of s's own).
func Descend(s Signed, v *Verified, caDER []byte) (*Parent, []Ancestor) {
	t := v.Template
	p := &Parent{ID: t.ID, Version: t.Version, Hash: t.Hash(), CA: CAFingerprint(caDER)}
	lineage := append([]Ancestor{{JWS: s.JWS, CA: caDER}}, s.Lineage...)
	return p, lineage
}

// ExportBundle signs templates (each chaining to caCert, the deployment's
// root, directly or through one of intermediates as Verify accepts) into
// a bundle file: a compact JWS of media type kanal-form-bundle+jws, signed
// by m's device for its organisation.
func ExportBundle(templates []Signed, m orgsig.Member, caCert *x509.Certificate, now time.Time, intermediates ...*x509.Certificate) (string, error) {
	if len(templates) == 0 || len(templates) > MaxBundleTemplates {
		return "", fmt.Errorf("forms.export: %w: 1 to %d templates", ErrInvalid, MaxBundleTemplates)
	}
	for _, s := range templates {
		if _, err := Verify(s, caCert, intermediates...); err != nil {
			return "", fmt.Errorf("forms.export: %w", err)
		}
	}
	now = now.UTC().Truncate(time.Second)
	payload, err := json.Marshal(bundlePayload{Version: 1, ExportedAt: now, Templates: templates})
	if err != nil {
		return "", fmt.Errorf("forms.export: %w", err)
	}
	roots, err := trustPool(caCert, intermediates)
	if err != nil {
		return "", fmt.Errorf("forms.export: %w", err)
	}
	b, _, err := orgsig.SignMember(m, roots, now, TypeBundle, payload)
	if err != nil {
		return "", fmt.Errorf("forms.export: %w", classify(err))
	}
	if len(b) > MaxBundle {
		return "", fmt.Errorf("forms.export: %w: the bundle has %d bytes, at most %d", ErrInvalid, len(b), MaxBundle)
	}
	return b, nil
}

// ImportBundle verifies a bundle file against exporterCA, the CA
// certificate of the exporting deployment that the importing operator
// obtained from its operator: the bundle's signature by a member of an
// organisation of that deployment, and every template in it with its
// lineage. Nothing is stored: the caller publishes what it adopts.
// exporterIntermediates are the exporting deployment's issuing
// intermediates when its root is kept offline, as Verify takes them.
func ImportBundle(file []byte, exporterCA *x509.Certificate, exporterIntermediates ...*x509.Certificate) ([]Imported, *orgsig.Signed, error) {
	if exporterCA == nil {
		return nil, nil, fmt.Errorf("forms.import: %w: no exporter CA certificate", ErrCertificate)
	}
	if len(file) > MaxBundle {
		return nil, nil, fmt.Errorf("forms.import: %w: %d bytes, at most %d", ErrMalformed, len(file), MaxBundle)
	}
	roots, err := trustPool(exporterCA, exporterIntermediates)
	if err != nil {
		return nil, nil, fmt.Errorf("forms.import: %w", err)
	}
	var p bundlePayload
	at := func(payload []byte) (time.Time, error) {
		if err := orgsig.DecodeStrict(payload, &p); err != nil {
			return time.Time{}, err
		}
		if p.Version != 1 || p.ExportedAt.IsZero() {
			return time.Time{}, fmt.Errorf("%w: bundle version or exported_at", ErrMalformed)
		}
		return p.ExportedAt, nil
	}
	sig, err := orgsig.VerifyMember(strings.TrimSpace(string(file)), MaxBundle, TypeBundle, roots, at)
	if err != nil {
		return nil, nil, fmt.Errorf("forms.import: %w", classify(err))
	}
	if len(p.Templates) == 0 || len(p.Templates) > MaxBundleTemplates {
		return nil, nil, fmt.Errorf("forms.import: %w: 1 to %d templates", ErrMalformed, MaxBundleTemplates)
	}
	out := make([]Imported, 0, len(p.Templates))
	for i, s := range p.Templates {
		v, err := Verify(s, exporterCA, exporterIntermediates...)
		if err != nil {
			return nil, nil, fmt.Errorf("forms.import: template %d: %w", i+1, err)
		}
		out = append(out, Imported{Signed: s, Verified: v})
	}
	return out, sig, nil
}
