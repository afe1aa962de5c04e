package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity"
	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/internal/db/dbtest"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
)

// TestAttackDeviceTakeoverOverKanald runs the device takeover against the
// real kanald, on SQLite and on PostgreSQL. The adversary holds a copy of
// the session token of Anna's phone — a substantial one — and a key pair
// of their own. They try to renew the phone to their key: refused, and
// the phone's certificate and session are as before. Then Anna changes the
// phone's key herself: the stolen token is dead, and Anna's laptop, on its
// open stream, is told that the phone has a new key.
func TestAttackDeviceTakeoverOverKanald(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			var env []string
			if engine == "postgres" {
				base := dbtest.PostgresURL(t)
				env = append(env, "KANAL_DATABASE_URL="+dbtest.WithSchema(t, base, dbtest.NewSchema(t, base)))
			}
			s := kanaldtest.Start(t, kanaldBin, env...)
			ctx := context.Background()
			const password = "anna's long password"
			ic, v := s.Verify(t, "anna@example.de")
			if err := ic.WithToken(v.SetupToken).SetPassword(ctx, password, ""); err != nil {
				t.Fatal(err)
			}
			phoneKey := newKey(t)
			phone := s.Enrol(t, v.AccountID, ic.WithToken(v.SetupToken), "phone", phoneKey, password)
			laptop := s.Enrol(t, v.AccountID, phone.Identity, "laptop", newKey(t), password)

			sdk := laptop.SDK(t, s.URL, client.NewMemoryStore())
			st, err := sdk.Connect(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()

			phoneCert := func() string {
				t.Helper()
				devs, err := laptop.Identity.AccountDevices(ctx, v.AccountID)
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range devs {
					if d.DeviceID == phone.DeviceID {
						return d.Certificate
					}
				}
				t.Fatal("the phone is not listed")
				return ""
			}
			before := phoneCert()

			// The thief's attempts: the bare request the old route took,
			// and the client's full renewal with a proof by their own key.
			thief := newKey(t)
			csr, err := idclient.CertificateRequest(thief)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := json.Marshal(map[string]string{"csr": base64.StdEncoding.EncodeToString(csr)})
			req, _ := http.NewRequest("POST", s.URL+"/v1/devices/"+phone.DeviceID+"/renew", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+phone.Token)
			req.Header.Set("Content-Type", "application/json")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusForbidden {
				t.Fatalf("renewal with a stolen token and no proof: %d", res.StatusCode)
			}
			_, err = phone.Identity.Renew(ctx, phone.DeviceID, idclient.Renewal{Current: thief, Next: thief})
			if !idclient.IsProblem(err, string(identity.TypeInvalidKeyProof)) {
				t.Fatalf("renewal with the thief's own proof: %v", err)
			}
			if phoneCert() != before {
				t.Fatal("a refused renewal changed the phone's certificate")
			}
			if _, err := phone.Identity.Me(ctx); err != nil {
				t.Fatalf("the phone's session after the refused attempts: %v", err)
			}

			// Anna changes the phone's key.
			rn, err := phone.Identity.Renew(ctx, phone.DeviceID, idclient.Renewal{Current: phoneKey, Next: newKey(t)})
			if err != nil {
				t.Fatal(err)
			}
			if rn.Level != identity.LevelSubstantial || phoneCert() == before {
				t.Fatalf("renewal: level %s, certificate changed %v", rn.Level, phoneCert() != before)
			}
			if _, err := phone.Identity.Me(ctx); idclient.StatusOf(err) != http.StatusUnauthorized {
				t.Fatalf("the stolen token after the key change: %v", err)
			}
			rctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			for {
				in, err := st.Receive(rctx)
				if err != nil {
					t.Fatalf("the laptop was not told: %v", err)
				}
				if b, ok := in.Message.Body.(*kind.DeviceChangeBody); ok && in.FromServer {
					if b.DeviceID != phone.DeviceID || b.AccountID != v.AccountID || b.Op != "key" {
						t.Fatalf("notice %+v", b)
					}
					break
				}
			}
		})
	}
}

func newKey(t *testing.T) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
