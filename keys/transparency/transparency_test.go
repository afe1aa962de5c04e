package transparency

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json")

func fp(s string) Fingerprint { return CertFingerprint([]byte(s)) }

// sample returns one valid entry of each kind.
func sample() map[string]Entry {
	return map[string]Entry{
		"device":             {Kind: KindDevice, Account: "acc_1", Device: "dev_1", Cert: fp("cert 1"), Time: 1767225600},
		"identity-key":       {Kind: KindIdentityKey, Account: "acc_1", Device: "dev_1", Cert: fp("cert 1"), Key: []byte{1, 2, 3, 4, 5}, Time: 1767225601},
		"device-revoked":     {Kind: KindDeviceRevoked, Account: "acc_1", Device: "dev_1", Cert: fp("cert 1"), Time: 1767225602},
		"membership":         {Kind: KindMembership, Org: "org_1", Account: "acc_1", Device: "dev_1", Role: "agent", Cert: fp("membership 1"), Time: 1767225603},
		"membership-revoked": {Kind: KindMembershipRevoked, Org: "org_1", Account: "acc_1", Device: "dev_1", Cert: fp("membership 1"), Time: 1767225604},
		"survey-head":        {Kind: KindSurveyHead, Survey: "srv_1", Size: 42, Head: bytes.Repeat([]byte{7}, 32), Time: 1767225605},

		"v2 device":             {Version: V2, Kind: KindDevice, Commitment: sampleCommitment(), Device: "dev_1", Cert: fp("cert 1"), Time: 1767225600},
		"v2 identity-key":       {Version: V2, Kind: KindIdentityKey, Commitment: sampleCommitment(), Device: "dev_1", Cert: fp("cert 1"), Key: []byte{1, 2, 3, 4, 5}, Time: 1767225601},
		"v2 device-revoked":     {Version: V2, Kind: KindDeviceRevoked, Commitment: sampleCommitment(), Device: "dev_1", Cert: fp("cert 1"), Time: 1767225602},
		"v2 membership":         {Version: V2, Kind: KindMembership, Org: "org_1", Commitment: sampleCommitment(), Device: "dev_1", Role: "agent", Cert: fp("membership 1"), Time: 1767225603},
		"v2 membership-revoked": {Version: V2, Kind: KindMembershipRevoked, Org: "org_1", Commitment: sampleCommitment(), Device: "dev_1", Cert: fp("membership 1"), Time: 1767225604},
		"v2 survey-head":        {Version: V2, Kind: KindSurveyHead, Survey: "srv_1", Size: 42, Head: bytes.Repeat([]byte{7}, 32), Time: 1767225605},
	}
}

// sampleSalt is the salt of the vectors' account acc_1: the bytes 0x00 to
// 0x1f.
func sampleSalt() Salt {
	var s Salt
	for i := range s {
		s[i] = byte(i)
	}
	return s
}

func sampleCommitment() Commitment { return AccountCommitment(sampleSalt(), "acc_1") }

// vector is one line of testdata/vectors.json, cited by docs/transparency.md.
type vector struct {
	Name     string `json:"name"`
	Entry    string `json:"entry"`     // the encoded entry
	LeafHash string `json:"leaf_hash"` // hex of SHA-256(0x00 || entry)
	Valid    bool   `json:"valid"`
}

func invalidEntries() map[string]string {
	good := "kanal-log v1\nkind device\naccount acc_1\ndevice dev_1\ncert sha256:" + strings.Repeat("ab", 32) + "\ntime 5\n"
	goodV2 := "kanal-log v2\nkind device\ncommitment " + sampleCommitment().String() + "\ndevice dev_1\ncert sha256:" + strings.Repeat("ab", 32) + "\ntime 5\n"
	return map[string]string{
		"no final line feed":        strings.TrimSuffix(good, "\n"),
		"trailing blank line":       good + "\n",
		"wrong header":              strings.Replace(good, "kanal-log v1", "kanal-log v3", 1),
		"v1 account in v2":          strings.Replace(good, "kanal-log v1", "kanal-log v2", 1),
		"v2 commitment in v1":       strings.Replace(goodV2, "kanal-log v2", "kanal-log v1", 1),
		"v2 upper-case commitment":  strings.Replace(goodV2, sampleCommitment().String(), strings.ToUpper(sampleCommitment().String()), 1),
		"v2 short commitment":       strings.Replace(goodV2, sampleCommitment().String(), sampleCommitment().String()[2:], 1),
		"v2 commitment and account": strings.Replace(goodV2, "device dev_1", "account acc_1\ndevice dev_1", 1),
		"unknown kind":              strings.Replace(good, "kind device", "kind devices", 1),
		"out of order":              strings.Replace(good, "account acc_1\ndevice dev_1", "device dev_1\naccount acc_1", 1),
		"missing line":              strings.Replace(good, "device dev_1\n", "", 1),
		"extra line":                strings.Replace(good, "time 5\n", "time 5\nkey AQID\n", 1),
		"bad id":                    strings.Replace(good, "acc_1", "acc 1", 1),
		"empty id":                  strings.Replace(good, "acc_1", "", 1),
		"trailing space":            strings.Replace(good, "dev_1", "dev_1 ", 1),
		"carriage return":           strings.ReplaceAll(good, "\n", "\r\n"),
		"upper-case hex":            strings.Replace(good, strings.Repeat("ab", 32), strings.Repeat("AB", 32), 1),
		"short fingerprint":         strings.Replace(good, strings.Repeat("ab", 32), strings.Repeat("ab", 31), 1),
		"leading zero in time":      strings.Replace(good, "time 5", "time 05", 1),
		"negative time":             strings.Replace(good, "time 5", "time -5", 1),
		"double space":              strings.Replace(good, "device dev_1", "device  dev_1", 1),
		"key unpadded":              "kanal-log v1\nkind identity-key\naccount a\ndevice d\ncert sha256:" + strings.Repeat("ab", 32) + "\nkey AQI\ntime 5\n",
		"role upper-case":           "kanal-log v1\nkind membership\norg o\naccount a\ndevice d\nrole Agent\ncert sha256:" + strings.Repeat("ab", 32) + "\ntime 5\n",
	}
}

func TestVectors(t *testing.T) {
	var vs []vector
	for name, e := range sample() {
		data, err := e.Marshal()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		h := LeafHash(data)
		vs = append(vs, vector{Name: name, Entry: string(data), LeafHash: hex.EncodeToString(h[:]), Valid: true})
	}
	for name, data := range invalidEntries() {
		vs = append(vs, vector{Name: name, Entry: data, Valid: false})
	}
	sortVectors(vs)
	if *update {
		b, _ := json.MarshalIndent(vs, "", "  ")
		if err := os.WriteFile("testdata/vectors.json", append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var stored []vector
	if err := json.Unmarshal(raw, &stored); err != nil {
		t.Fatal(err)
	}
	if len(stored) != len(vs) {
		t.Fatalf("testdata has %d vectors, the code makes %d (run with -update and review)", len(stored), len(vs))
	}
	for _, v := range stored {
		e, err := ParseEntry([]byte(v.Entry))
		if !v.Valid {
			if err == nil || !errors.Is(err, ErrEntry) {
				t.Errorf("%s: parsed %q, want an ErrEntry (got %v)", v.Name, v.Entry, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", v.Name, err)
			continue
		}
		// The leaf hash is RFC 6962's, computed here without tlog.
		sum := sha256.Sum256(append([]byte{0}, v.Entry...))
		if hex.EncodeToString(sum[:]) != v.LeafHash {
			t.Errorf("%s: leaf hash %x, vector says %s", v.Name, sum, v.LeafHash)
		}
		want := sample()[v.Name]
		got, _ := e.Marshal()
		wantData, _ := want.Marshal()
		if !bytes.Equal(got, wantData) {
			t.Errorf("%s: parsed entry encodes as %q, want %q", v.Name, got, wantData)
		}
	}
}

func sortVectors(vs []vector) {
	for i := range vs {
		for j := i + 1; j < len(vs); j++ {
			if vs[j].Name < vs[i].Name {
				vs[i], vs[j] = vs[j], vs[i]
			}
		}
	}
}

func TestMarshalRefusesFieldsOfOtherKinds(t *testing.T) {
	e := sample()["device"]
	e.Role = "agent"
	if _, err := e.Marshal(); !errors.Is(err, ErrEntry) {
		t.Fatalf("a device entry with a role marshalled: %v", err)
	}
	e = sample()["identity-key"]
	e.Key = nil
	if _, err := e.Marshal(); !errors.Is(err, ErrEntry) {
		t.Fatalf("an identity-key entry without a key marshalled: %v", err)
	}
}

func FuzzParseEntry(f *testing.F) {
	for _, e := range sample() {
		data, _ := e.Marshal()
		f.Add(data)
	}
	for _, s := range invalidEntries() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := ParseEntry(data)
		if err != nil {
			if !errors.Is(err, ErrEntry) {
				t.Fatalf("error %v does not wrap ErrEntry", err)
			}
			return
		}
		// What parses is the one encoding of what it says.
		back, err := e.Marshal()
		if err != nil || !bytes.Equal(back, data) {
			t.Fatalf("round trip: %q -> %q, %v", data, back, err)
		}
	})
}

func testKey(t testing.TB, name string) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := GenerateKey(zeroReader{}, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// tree builds an in-memory log of n entries and returns its stored hashes.
func tree(t testing.TB, n int) ([][]byte, tlog.HashReaderFunc) {
	var data [][]byte
	var stored []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	for i := range n {
		e := sample()["device"]
		e.Time = int64(i)
		d, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		hs, err := tlog.StoredHashes(int64(i), d, r)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, hs...)
		data = append(data, d)
	}
	return data, r
}

func TestCheckpointSignOpen(t *testing.T) {
	s, v := testKey(t, "kanal/test")
	c := Checkpoint{Origin: "kanal/test", Size: 3, Hash: tlog.Hash{1, 2, 3}}
	msg, err := Sign(c, s)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := Open(msg, v)
	if err != nil || got != c {
		t.Fatalf("Open = %+v, %v; want %+v", got, err, c)
	}
	// Tampering with the size breaks the signature.
	bad := bytes.Replace(msg, []byte("\n3\n"), []byte("\n4\n"), 1)
	if _, _, err := Open(bad, v); !errors.Is(err, ErrSignature) {
		t.Fatalf("tampered checkpoint: %v, want ErrSignature", err)
	}
	// Another log's key is not this log's.
	s2, _, _ := GenerateKey(strings.NewReader(strings.Repeat("x", 64)), "kanal/test")
	signer2, _ := note.NewSigner(s2)
	msg2, err := Sign(c, signer2)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(msg2, v); !errors.Is(err, ErrSignature) {
		t.Fatalf("checkpoint by another key: %v, want ErrSignature", err)
	}
	// The origin must be the key's name.
	msg3, _ := Sign(Checkpoint{Origin: "kanal/test2", Size: 3}, s)
	if _, _, err := Open(msg3, v); err == nil {
		t.Fatal("a checkpoint whose origin is not the key's name opened")
	}
}

func TestParseCheckpointStrict(t *testing.T) {
	h := "AQIDAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	for name, text := range map[string]string{
		"extension line": "kanal/x\n3\n" + h + "\next\n",
		"leading zero":   "kanal/x\n03\n" + h + "\n",
		"short hash":     "kanal/x\n3\nAQID\n",
		"no final lf":    "kanal/x\n3\n" + h,
		"empty origin":   "\n3\n" + h + "\n",
	} {
		if _, err := ParseCheckpoint(text); !errors.Is(err, ErrCheckpoint) {
			t.Errorf("%s: %v, want ErrCheckpoint", name, err)
		}
	}
	if _, err := ParseCheckpoint("kanal/x\n3\n" + h + "\n"); err != nil {
		t.Fatal(err)
	}
}

func TestProofs(t *testing.T) {
	data, r := tree(t, 37)
	for _, n := range []int64{1, 2, 5, 16, 37} {
		th, err := tlog.TreeHash(n, r)
		if err != nil {
			t.Fatal(err)
		}
		c := Checkpoint{Origin: "kanal/test", Size: n, Hash: th}
		for i := int64(0); i < n; i++ {
			p, err := tlog.ProveRecord(n, i, r)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyInclusion(c, i, data[i], p); err != nil {
				t.Fatalf("n=%d i=%d: %v", n, i, err)
			}
			// Another entry at the same index does not verify.
			if err := VerifyInclusion(c, i, append([]byte("x"), data[i]...), p); !errors.Is(err, ErrInclusion) {
				t.Fatalf("n=%d i=%d: a foreign entry verified: %v", n, i, err)
			}
		}
		if err := VerifyInclusion(c, n, data[0], nil); !errors.Is(err, ErrInclusion) {
			t.Fatalf("index beyond the tree: %v", err)
		}
		for m := int64(0); m <= n; m++ {
			mh, _ := tlog.TreeHash(m, r)
			old := Checkpoint{Origin: "kanal/test", Size: m, Hash: mh}
			var p tlog.TreeProof
			if m > 0 && m < n {
				if p, err = tlog.ProveTree(n, m, r); err != nil {
					t.Fatal(err)
				}
			}
			if err := VerifyConsistency(old, c, p); err != nil {
				t.Fatalf("%d -> %d: %v", m, n, err)
			}
			if m > 0 {
				forked := old
				forked.Hash[0] ^= 1
				if err := VerifyConsistency(forked, c, p); !errors.Is(err, ErrConsistency) {
					t.Fatalf("%d -> %d: a forked tree was consistent: %v", m, n, err)
				}
			}
		}
	}
}

func TestDecodeHashes(t *testing.T) {
	hs := []tlog.Hash{{1}, {2}}
	got, err := DecodeHashes(EncodeHashes(hs))
	if err != nil || len(got) != 2 || got[0] != hs[0] || got[1] != hs[1] {
		t.Fatalf("round trip: %v %v", got, err)
	}
	if _, err := DecodeHashes([]string{"AQID"}); !errors.Is(err, ErrProofEncoded) {
		t.Fatalf("short hash: %v", err)
	}
}

// TestAccountCommitment checks the commitment against its definition,
// computed here by hand, and that an entry names an account only under
// its own salt: another salt, another account, a salt of another length
// or a version 1 entry of another account name no one.
func TestAccountCommitment(t *testing.T) {
	salt := sampleSalt()
	want := sha256.Sum256(append(append([]byte("kanal-account/v1"), salt[:]...), "acc_1"...))
	if got := AccountCommitment(salt, "acc_1"); got != Commitment(want) {
		t.Fatalf("commitment %x, want %x", got, want)
	}
	e := sample()["v2 device"]
	other := salt
	other[31] ^= 1
	cases := []struct {
		name    string
		account string
		salt    []byte
		want    bool
	}{
		{"its account and salt", "acc_1", salt[:], true},
		{"another salt", "acc_1", other[:], false},
		{"another account", "acc_2", salt[:], false},
		{"the account id moved into the salt", "1", append([]byte("acc_"), salt[:28]...), false},
		{"a salt too long", "acc_1", append(salt[:], 0), false},
		{"a salt too short", "acc_1", salt[:31], false},
		{"no salt", "acc_1", nil, false},
		{"no account", "", salt[:], false},
	}
	for _, c := range cases {
		if got := e.NamesAccount(c.account, c.salt); got != c.want {
			t.Errorf("%s: NamesAccount = %v, want %v", c.name, got, c.want)
		}
	}
	v1 := sample()["device"]
	if !v1.NamesAccount("acc_1", nil) || v1.NamesAccount("acc_2", salt[:]) {
		t.Error("a version 1 entry names its account in clear, and only it")
	}
	head := sample()["v2 survey-head"]
	if head.NamesAccount("acc_1", salt[:]) {
		t.Error("a survey head names an account")
	}
}
