package keys_test

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"

	"github.com/kanal-server/kanal/keys"
)

// device is what a client keeps in its key store.
type device struct {
	id  keys.IdentityPrivate
	spk keys.SignedPrekeyPrivate
	pq  keys.PQPrekeyPrivate
	opk keys.OneTimePrekeyPrivate
}

func newDevice() device {
	// nil means crypto/rand.
	id, _ := keys.GenerateIdentity(nil)
	spk, _ := keys.GenerateSignedPrekey(nil, 1)
	pq, _ := keys.GeneratePQPrekey(nil, 1, true) // last-resort PQ prekey
	opk, _ := keys.GenerateOneTimePrekey(nil, 100)
	return device{id, spk, pq, opk}
}

func Example_keyGeneration() {
	id, err := keys.GenerateIdentity(nil)
	if err != nil {
		panic(err)
	}
	text, _ := id.Public().MarshalText()
	var back keys.IdentityPublic
	if err := back.UnmarshalText(text); err != nil {
		panic(err)
	}
	fmt.Println(string(text[:12]), back.Equal(id.Public()))

	// A key pasted where another kind belongs fails loudly.
	var spk keys.SignedPrekeyPublic
	fmt.Println(spk.UnmarshalText(text) != nil)

	// The identity key is bound to the PKI by the device key.
	_, deviceKey, _ := ed25519.GenerateKey(nil)
	sig, _ := keys.SignIdentity(deviceKey, id.Public(), "device-1")
	fmt.Println(keys.VerifyIdentity(deviceKey.Public(), id.Public(), "device-1", sig))
	// Output:
	// kanal-idpub: true
	// true
	// <nil>
}

func Example_bundle() {
	bob := newDevice()
	bundle, err := keys.NewPrekeyBundle("bob-laptop", bob.id, bob.spk, bob.pq, &bob.opk)
	if err != nil {
		panic(err)
	}
	// Published as JSON by the directory...
	js, _ := json.Marshal(bundle)
	// ...and verified by whoever fetches it.
	var fetched keys.PrekeyBundle
	if err := json.Unmarshal(js, &fetched); err != nil {
		panic(err)
	}
	fmt.Println(fetched.Verify(), fetched.DeviceID, fetched.HasOneTimePrekey())
	// Output: <nil> bob-laptop true
}

func Example_pqxdh() {
	alice, bob := newDevice(), newDevice()
	bundle, _ := keys.NewPrekeyBundle("bob-laptop", bob.id, bob.spk, bob.pq, &bob.opk)

	// Alice: key agreement, then the first ratchet message.
	init, err := keys.InitiatePQXDH(nil, alice.id, bundle)
	if err != nil {
		panic(err)
	}
	aliceSession, _ := keys.NewInitiatorSession(nil, init.SharedKey, init.AssociatedData, init.RemoteRatchetKey)
	first, _ := aliceSession.Encrypt([]byte("Guten Tag, Bürgeramt"))
	header, _ := init.Message.MarshalBinary() // sent together with first

	// Bob: decode, look up the named prekeys, agree, decrypt.
	var msg keys.InitialMessage
	if err := msg.UnmarshalBinary(header); err != nil {
		panic(err)
	}
	sk, ad, err := keys.RespondPQXDH(keys.ResponderPrekeys{
		Identity: bob.id, SignedPrekey: bob.spk, PQPrekey: bob.pq, OneTimePrekey: &bob.opk,
	}, &msg)
	if err != nil {
		panic(err)
	}
	bobSession, _ := keys.NewResponderSession(nil, sk, ad, bob.spk)
	pt, err := bobSession.Decrypt(first)
	fmt.Println(string(pt), err)
	// Output: Guten Tag, Bürgeramt <nil>
}

func Example_ratchet() {
	alice, bob := newDevice(), newDevice()
	bundle, _ := keys.NewPrekeyBundle("bob", bob.id, bob.spk, bob.pq, nil)
	init, _ := keys.InitiatePQXDH(nil, alice.id, bundle)
	a, _ := keys.NewInitiatorSession(nil, init.SharedKey, init.AssociatedData, init.RemoteRatchetKey)
	sk, ad, _ := keys.RespondPQXDH(keys.ResponderPrekeys{Identity: bob.id, SignedPrekey: bob.spk, PQPrekey: bob.pq}, &init.Message)
	b, _ := keys.NewResponderSession(nil, sk, ad, bob.spk)

	m1, _ := a.Encrypt([]byte("one"))
	m2, _ := a.Encrypt([]byte("two"))
	p2, _ := b.Decrypt(m2) // out of order is fine
	p1, _ := b.Decrypt(m1)
	reply, _ := b.Encrypt([]byte("three"))
	p3, _ := a.Decrypt(reply)
	fmt.Println(string(p1), string(p2), string(p3))

	// Persist the session between messages.
	state, _ := b.MarshalBinary()
	restored, _ := keys.UnmarshalSession(nil, state)
	_, err := restored.Decrypt(m1)
	fmt.Println(err)
	// Output:
	// one two three
	// keys.ratchet: message 0 already received: replayed or expired message
}

func Example_senderKey() {
	sender, _ := keys.NewSenderKey(nil)
	// Sent to each member over the pairwise sessions.
	dist, _ := sender.Distribution().MarshalBinary()

	var d keys.SenderKeyDistribution
	_ = d.UnmarshalBinary(dist)
	member, _ := keys.NewSenderKeyReceiver(&d)

	ad := []byte("conversation 7")
	msg, _ := sender.Encrypt([]byte("Sitzung um 18 Uhr"), ad)
	pt, err := member.Decrypt(msg, ad)
	fmt.Println(string(pt), err)

	// Membership changed: rotate; the old distribution is useless now.
	sender, _ = sender.Rotate(nil)
	msg, _ = sender.Encrypt([]byte("neu"), ad)
	_, err = member.Decrypt(msg, ad)
	fmt.Println(err != nil)
	// Output:
	// Sitzung um 18 Uhr <nil>
	// true
}
