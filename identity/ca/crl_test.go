package ca

import (
	"errors"
	"math/big"
	"testing"
	"time"
)

func TestRevocation(t *testing.T) {
	c := newCA(t)
	other := newCA(t)
	revoked := issueDevice(t, c, p256Key(t))
	kept := issueDevice(t, c, ed25519Key(t))
	at := t0.Add(2 * time.Hour)
	crl, err := c.RevocationList([]Revoked{{Serial: revoked.SerialNumber, At: at}}, big.NewInt(7), t0.Add(3*time.Hour), t0.Add(27*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	when, ok, err := CheckRevoked(crl, c.Certificate(), revoked.SerialNumber)
	if err != nil || !ok || !when.Equal(at) {
		t.Errorf("revoked: %v %v %v", when, ok, err)
	}
	if _, ok, err := CheckRevoked(crl, c.Certificate(), kept.SerialNumber); err != nil || ok {
		t.Errorf("kept: %v %v", ok, err)
	}
	if _, ok, err := CheckRevokedAt(crl, c.Certificate(), revoked.SerialNumber, t0.Add(4*time.Hour)); err != nil || !ok {
		t.Errorf("CheckRevokedAt current: %v %v", ok, err)
	}
	for name, tt := range map[string]struct {
		crl    []byte
		issuer *CA
		at     time.Time
		want   error
	}{
		"wrong issuer": {crl, other, time.Time{}, ErrBadCRL},
		"tampered":     {flipLast(crl), c, time.Time{}, ErrBadCRL},
		"garbage":      {[]byte{0x30, 0}, c, time.Time{}, ErrBadCRL},
		"empty":        {nil, c, time.Time{}, ErrBadCRL},
		"stale":        {crl, c, t0.Add(27 * time.Hour), ErrStaleCRL},
		"early":        {crl, c, t0, ErrStaleCRL},
	} {
		var err error
		if tt.at.IsZero() {
			_, _, err = CheckRevoked(tt.crl, tt.issuer.Certificate(), revoked.SerialNumber)
		} else {
			_, _, err = CheckRevokedAt(tt.crl, tt.issuer.Certificate(), revoked.SerialNumber, tt.at)
		}
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", name, err, tt.want)
		}
	}
	for name, tt := range map[string]struct {
		entries   []Revoked
		number    *big.Int
		now, next time.Time
	}{
		"nil number":   {nil, nil, t0, t0.Add(time.Hour)},
		"negative":     {nil, big.NewInt(-1), t0, t0.Add(time.Hour)},
		"next before":  {nil, big.NewInt(1), t0, t0},
		"nil serial":   {[]Revoked{{At: t0}}, big.NewInt(1), t0, t0.Add(time.Hour)},
		"zero time":    {[]Revoked{{Serial: big.NewInt(5)}}, big.NewInt(1), t0, t0.Add(time.Hour)},
		"listed twice": {[]Revoked{{Serial: big.NewInt(5), At: t0}, {Serial: big.NewInt(5), At: t0}}, big.NewInt(1), t0, t0.Add(time.Hour)},
	} {
		if _, err := c.RevocationList(tt.entries, tt.number, tt.now, tt.next); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestOrgRevocation(t *testing.T) {
	c := newCA(t)
	o := newOrg(t, c, "o")
	m := issueMembership(t, o, p256Key(t).Public())
	crl, err := o.RevocationList([]Revoked{{Serial: m.SerialNumber, At: t0}}, big.NewInt(1), t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := CheckRevoked(crl, o.Certificate(), m.SerialNumber); err != nil || !ok {
		t.Errorf("%v %v", ok, err)
	}
	if _, _, err := CheckRevoked(crl, c.Certificate(), m.SerialNumber); !errors.Is(err, ErrBadCRL) {
		t.Errorf("root as CRL issuer: %v", err)
	}
}
