package keystore

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// testParams keep argon2id cheap; TestRealParams uses the real ones.
var testParams = Params{Memory: 64, Time: 1, Threads: 1}

func TestMain(m *testing.M) {
	// Lower the floor and the creation default so most tests run fast. The
	// ceiling stays at the defaults for TestRealParams but low enough that
	// fuzz inputs cannot ask for gigabytes.
	minParams = Params{Memory: 8, Time: 1, Threads: 1}
	maxParams = Params{Memory: defaultParams.Memory, Time: 2, Threads: 2}
	createParams = testParams
	os.Exit(m.Run())
}

var pass = []byte("correct horse battery staple")

func newStore(t testing.TB) *Store {
	t.Helper()
	s, err := Create(filepath.Join(t.TempDir(), "home", "keystore"), pass)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func p256(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func fill(t testing.TB, s *Store, key crypto.Signer) {
	s.Data = Data{
		ServerURL:     "https://kanal.musterstadt.de",
		AccountID:     "acc-1",
		DeviceID:      "dev-1",
		DeviceKey:     key,
		DeviceCertPEM: []byte("-----BEGIN CERTIFICATE-----\n...\n"),
		SessionToken:  "tok",
		Secrets:       map[string][]byte{"identity": {1, 2, 3}, "empty": {}},
	}
}

func assertEqual(t *testing.T, got, want Data) {
	t.Helper()
	gk, wk := got.DeviceKey, want.DeviceKey
	got.DeviceKey, want.DeviceKey = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("data differs:\n got %+v\nwant %+v", got, want)
	}
	if (gk == nil) != (wk == nil) {
		t.Fatalf("device key: got %T, want %T", gk, wk)
	}
	if wk != nil && !wk.(interface{ Equal(crypto.PrivateKey) bool }).Equal(gk) {
		t.Error("device key differs")
	}
}

func TestRoundTrip(t *testing.T) {
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]crypto.Signer{"P-256": p256(t), "Ed25519": edKey, "none": nil} {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			fill(t, s, key)
			if err := s.Save(); err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(s.Path())
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("mode %v", st.Mode().Perm())
			}
			got, err := Open(s.Path(), pass)
			if err != nil {
				t.Fatal(err)
			}
			assertEqual(t, got.Data, s.Data)
			if got.Params() != testParams {
				t.Errorf("params %+v", got.Params())
			}
			entries, _ := os.ReadDir(filepath.Dir(s.Path()))
			if len(entries) != 1 {
				t.Errorf("directory holds %d entries, want only the store", len(entries))
			}
		})
	}
}

func TestCreateEmptyAndExisting(t *testing.T) {
	s := newStore(t)
	got, err := Open(s.Path(), pass)
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, got.Data, Data{})
	if _, err := Create(s.Path(), pass); !errors.Is(err, os.ErrExist) {
		t.Errorf("Create over an existing store: %v", err)
	}
	if _, err := Create(filepath.Join(t.TempDir(), "x"), nil); !errors.Is(err, ErrEmptyPassphrase) {
		t.Errorf("empty passphrase: %v", err)
	}
}

// Every save draws a fresh nonce; the salt (and argon2id's output) is
// kept until the passphrase or the parameters change, and then drawn anew.
func TestSaveFreshNonceSaltOnChange(t *testing.T) {
	s := newStore(t)
	fill(t, s, p256(t))
	read := func() []byte {
		t.Helper()
		if err := s.Save(); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(s.Path())
		return b
	}
	off := len(magic) + 1 + 9
	salt := func(b []byte) []byte { return b[off : off+saltSize] }
	nonce := func(b []byte) []byte { return b[off+saltSize : headerSize-checkSize] }
	a, b := read(), read()
	if bytes.Equal(nonce(a), nonce(b)) {
		t.Error("nonce reused across saves")
	}
	if !bytes.Equal(salt(a), salt(b)) {
		t.Error("salt changed without a passphrase or parameter change")
	}
	if err := s.SetPassphrase([]byte("another passphrase")); err != nil {
		t.Fatal(err)
	}
	c := read()
	if bytes.Equal(salt(b), salt(c)) {
		t.Error("salt kept across a passphrase change")
	}
	if _, err := Open(s.Path(), pass); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("old passphrase opens the re-keyed store: %v", err)
	}
	reopened, err := Open(s.Path(), []byte("another passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, reopened.Data, s.Data)
}

func TestWrongPassphrase(t *testing.T) {
	s := newStore(t)
	fill(t, s, p256(t))
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	got, err := Open(s.Path(), []byte("Correct horse battery staple"))
	if !errors.Is(err, ErrWrongPassphrase) || got != nil {
		t.Errorf("got %v, %v", got, err)
	}
	if _, err := Open(s.Path(), nil); !errors.Is(err, ErrEmptyPassphrase) {
		t.Errorf("empty passphrase: %v", err)
	}
}

func TestChangePassphrase(t *testing.T) {
	s := newStore(t)
	fill(t, s, p256(t))
	if err := s.SetPassphrase([]byte("new")); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(s.Path(), pass); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("old passphrase: %v", err)
	}
	if _, err := Open(s.Path(), []byte("new")); err != nil {
		t.Errorf("new passphrase: %v", err)
	}
}

// TestTamperEveryByte flips each byte of a small store in turn: every
// change must be refused and return no data.
func TestTamperEveryByte(t *testing.T) {
	s := newStore(t)
	s.Data.AccountID = "a"
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tampered")
	for i := range orig {
		for _, mask := range []byte{0x01, 0x80} {
			b := bytes.Clone(orig)
			b[i] ^= mask
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := Open(path, pass)
			if err == nil || got != nil {
				t.Fatalf("byte %d ^ %#x accepted", i, mask)
			}
			if i >= headerSize && !errors.Is(err, ErrCorrupt) {
				t.Errorf("byte %d: ciphertext change reported as %v", i, err)
			}
		}
	}
	// Truncation and extension.
	for _, b := range [][]byte{orig[:len(orig)-1], orig[:headerSize], append(bytes.Clone(orig), 0)} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(path, pass); err == nil {
			t.Errorf("length %d accepted", len(b))
		}
	}
}

func TestPermissionsRefused(t *testing.T) {
	s := newStore(t)
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644, 0o660} {
		if err := os.Chmod(s.Path(), mode); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(s.Path(), pass); !errors.Is(err, ErrPermissions) {
			t.Errorf("mode %v: %v", mode, err)
		}
	}
	if err := os.Chmod(s.Path(), 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(s.Path(), pass); err != nil {
		t.Errorf("mode 0400: %v", err)
	}
}

func TestParamsChangeReencrypts(t *testing.T) {
	s := newStore(t)
	fill(t, s, p256(t))
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(s.Path())
	p := Params{Memory: 128, Time: 2, Threads: 2}
	if err := s.SetParams(p); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(s.Path())
	if bytes.Equal(before[len(magic)+1:len(magic)+10], after[len(magic)+1:len(magic)+10]) {
		t.Error("header parameters unchanged")
	}
	got, err := Open(s.Path(), pass)
	if err != nil {
		t.Fatal(err)
	}
	if got.Params() != p {
		t.Errorf("params %+v, want %+v", got.Params(), p)
	}
	assertEqual(t, got.Data, s.Data)

	for _, bad := range []Params{{}, {Memory: 64, Time: 0, Threads: 1}, {Memory: 64, Time: 1, Threads: 0},
		{Memory: maxParams.Memory + 1, Time: 1, Threads: 1}, {Memory: 64, Time: 3, Threads: 1}, {Memory: 8, Time: 1, Threads: 2}} {
		if err := s.SetParams(bad); !errors.Is(err, ErrParams) {
			t.Errorf("SetParams(%+v): %v", bad, err)
		}
	}
}

// TestRealParams runs once with the parameters real stores use.
func TestRealParams(t *testing.T) {
	s := newStore(t)
	fill(t, s, p256(t))
	if err := s.SetParams(DefaultParams()); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	got, err := Open(s.Path(), pass)
	if err != nil {
		t.Fatal(err)
	}
	if got.Params() != (Params{Memory: 19 * 1024, Time: 2, Threads: 1}) {
		t.Errorf("params %+v", got.Params())
	}
	assertEqual(t, got.Data, s.Data)
	if _, err := Open(s.Path(), []byte("wrong")); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("wrong passphrase: %v", err)
	}
}

func TestRejects(t *testing.T) {
	s := newStore(t)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s.Data.DeviceKey = rk
	if err := s.Save(); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("RSA device key: %v", err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	s.Data.DeviceKey = p384
	if err := s.Save(); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("P-384 device key: %v", err)
	}

	path := filepath.Join(t.TempDir(), "f")
	good, _ := seal(t, Data{})
	tooCostly := bytes.Clone(good)
	tooCostly[len(magic)+1] = 0xff // memory far above the ceiling
	for name, tt := range map[string]struct {
		file []byte
		want error
	}{
		"empty":       {nil, ErrFormat},
		"other magic": {append([]byte("kanal-keyst0re"), good[len(magic):]...), ErrFormat},
		"version 2":   {append(append([]byte(magic), 2), good[len(magic)+1:]...), ErrVersion},
		"huge memory": {tooCostly, ErrParams},
	} {
		if err := os.WriteFile(path, tt.file, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(path, pass); !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", name, err, tt.want)
		}
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing"), pass); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestStrictPayload(t *testing.T) {
	// Content that decrypts but is not what this version writes is refused.
	for name, plaintext := range map[string]string{
		"unknown field": `{"account_id":"a","extra":1}`,
		"trailing":      `{"account_id":"a"} {}`,
		"not JSON":      `nope`,
		"bad key":       `{"device_key":"AAAA"}`,
	} {
		if _, err := decodePayload([]byte(plaintext)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func seal(t testing.TB, d Data) ([]byte, error) {
	s := &Store{Data: d, passphrase: pass, params: testParams}
	b, err := s.seal()
	if err != nil {
		t.Fatal(err)
	}
	return b, nil
}

func FuzzOpen(f *testing.F) {
	good, _ := seal(f, Data{AccountID: "a", Secrets: map[string][]byte{"k": {1}}})
	f.Add(good)
	f.Add([]byte(magic))
	f.Add(good[:headerSize])
	f.Fuzz(func(t *testing.T, file []byte) {
		data, params, _, _, err := open(file, pass)
		if err != nil {
			if data.DeviceKey != nil || data.AccountID != "" || params != (Params{}) {
				t.Fatal("data returned with error")
			}
			return
		}
		if params.check() != nil {
			t.Fatalf("accepted params %+v", params)
		}
	})
}

func TestPackageDoc(t *testing.T) {
	pkgs, err := parser.ParseDir(token.NewFileSet(), ".", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range pkgs {
		for _, f := range pkg.Files {
			if f.Doc != nil && len(f.Doc.Text()) > 200 {
				return
			}
		}
	}
	t.Error("package keystore has no doc comment")
}

// TestUpdateBesideSave: one goroutine changes secrets through Update while
// another saves, as kanal chat's receiving goroutine and the SDK do. Without
// the store's lock the save encodes a map being written (a fatal error, or
// a race under -race); with it every save is a whole state and the last one
// holds every change.
func TestUpdateBesideSave(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	st, err := Create(path, []byte("pass"))
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	done := make(chan error, 1)
	go func() {
		for range n {
			if err := st.Save(); err != nil {
				done <- err
				return
			}
			_, _ = st.Secret("a0")
		}
		done <- nil
	}()
	for i := range n {
		st.Update(func(d *Data) {
			if d.Secrets == nil {
				d.Secrets = map[string][]byte{}
			}
			d.Secrets[string(rune('a'+i%26))+string(rune('0'+i%10))] = []byte{byte(i)}
		})
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := st.Save(); err != nil {
		t.Fatal(err)
	}
	got, err := Open(path, []byte("pass"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Data.Secrets, st.Data.Secrets) || len(got.Data.Secrets) == 0 {
		t.Fatalf("reopened %d secrets, saved %d", len(got.Data.Secrets), len(st.Data.Secrets))
	}
}
