package client_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/translog/witness"
	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/keys/transparency"
	"github.com/kanal-server/kanal/messaging/client"
)

// runWitness makes a witness of srv's log with the key skey and polls once.
func runWitness(t *testing.T, base, logKey, skey string) *witness.Witness {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "witness")
	if _, err := witness.Init(dir, "witness.example/unused", base, logKey, rand.Reader); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, witness.KeyFile), []byte(skey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := witness.Open(dir, witness.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func poll(t *testing.T, ws ...*witness.Witness) {
	t.Helper()
	for _, w := range ws {
		if r, err := w.Poll(context.Background()); err != nil || !r.Cosigned {
			t.Fatalf("witness poll: %+v %v", r, err)
		}
	}
}

func fetch(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return b
}

// TestAttackUncosignedCheckpoint: a client that requires two witnesses
// accepts only checkpoints both have cosigned. A checkpoint with one
// cosignature, the server's newest (uncosigned) one, and the newest one
// with the older checkpoint's cosignatures stapled on are refused, and
// the client keeps the last cosigned checkpoint; once the witnesses have
// cosigned the newer tree, the client moves on to it.
func TestAttackUncosignedCheckpoint(t *testing.T) {
	ctx := context.Background()
	sk1, vk1, _ := transparency.GenerateCosignerKey(rand.Reader, "witness.example/one")
	sk2, vk2, _ := transparency.GenerateCosignerKey(rand.Reader, "witness.example/two")
	srv := &server{Server: kanaldtest.Start(t, kanaldBin, "KANAL_LOG_WITNESSES="+vk1+","+vk2)}
	alice := signUp(t, srv, "alice@example.org", true)
	logKey := strings.TrimSpace(string(fetch(t, srv.URL+"/v1/log/key")))
	w1, w2 := runWitness(t, srv.URL, logKey, sk1), runWitness(t, srv.URL, logKey, sk2)

	newSDK := func() *client.Client {
		c, err := client.New(client.Options{BaseURL: srv.URL, Token: alice.Token, AccountID: alice.AccountID, DeviceID: alice.DeviceID,
			DeviceKey: alice.Key, DeviceCertificate: alice.Certificate, CA: alice.CA, Store: client.NewMemoryStore(), LogKey: logKey,
			Witnesses: []string{vk1, vk2}, WitnessQuorum: 2, WitnessMaxAge: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if _, err := client.New(client.Options{BaseURL: srv.URL, Token: alice.Token, AccountID: alice.AccountID, DeviceID: alice.DeviceID,
		DeviceKey: alice.Key, DeviceCertificate: alice.Certificate, CA: alice.CA, Store: client.NewMemoryStore(),
		Witnesses: []string{vk1}, WitnessQuorum: 2}); err == nil {
		t.Fatal("a quorum above the number of witnesses was accepted")
	}
	c := newSDK()

	// One witness of two: the server (quorum 1) serves it, the client refuses.
	poll(t, w1)
	if _, err := c.UpdateLog(ctx); !errors.Is(err, client.ErrLog) || !errors.Is(err, transparency.ErrQuorum) {
		t.Fatalf("a checkpoint with 1 of 2 cosignatures: %v", err)
	}
	if _, _, err := c.LogCheckpoint(ctx); err == nil {
		t.Fatal("a refused checkpoint was stored")
	}
	poll(t, w2)
	good, err := c.UpdateLog(ctx)
	if err != nil {
		t.Fatalf("a checkpoint both witnesses cosigned: %v", err)
	}

	// The log grows; nobody has cosigned the new tree yet.
	signUp(t, srv, "bob@example.org", true)
	latest := fetch(t, srv.URL+"/v1/log/checkpoint")
	logV, _ := transparency.NewVerifier(logKey)
	cp, _, err := transparency.Open(latest, logV)
	if err != nil || cp.Size <= good.Size {
		t.Fatalf("the log did not grow: %v %v", cp, err)
	}
	var p transparency.ConsistencyProof
	json.Unmarshal(fetch(t, srv.URL+"/v1/log/proof/consistency?old="+itoa(good.Size)+"&new="+itoa(cp.Size)), &p)
	proof, _ := transparency.DecodeHashes(p.Hashes)
	if _, err := c.AdvanceLog(ctx, latest, proof); !errors.Is(err, transparency.ErrQuorum) {
		t.Fatalf("the newest, uncosigned checkpoint: %v", err)
	}
	// The older tree's cosignatures stapled onto the newer one.
	cosigned := fetch(t, srv.URL+"/v1/log/witness/checkpoint")
	lines := strings.SplitAfterN(string(cosigned), "\n\n", 2)[1]
	sigs := strings.Split(strings.TrimSpace(lines), "\n")[1:]
	if _, err := c.AdvanceLog(ctx, transparency.AddSignatures(latest, sigs...), proof); !errors.Is(err, transparency.ErrQuorum) {
		t.Fatalf("the newest checkpoint with stapled cosignatures: %v", err)
	}
	if _, kept, err := c.LogCheckpoint(ctx); err != nil || kept != good {
		t.Fatalf("the last good checkpoint was not kept: %v %v", kept, err)
	}
	// The witnesses catch up; the client follows.
	poll(t, w1, w2)
	if now, err := c.UpdateLog(ctx); err != nil || now.Size != cp.Size {
		t.Fatalf("after the witnesses cosigned the newer tree: %v %v", now, err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
