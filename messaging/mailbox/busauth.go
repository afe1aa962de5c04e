package mailbox

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"hash"
	"slices"
	"sync"
)

// What crosses NATS between nodes is authenticated: anyone who can publish
// on the deployment's subjects could otherwise write envelopes of their
// making into a device's socket, or close anyone's stream. Every node holds
// the same key (cmd/kanald derives it from the deployment's CA key), and a
// message is
//
//	tag || payload,  tag = HMAC-SHA-256(key, purpose || 0x00 || subject || 0x00 || payload)
//
// The purpose keeps a tag made for one kind of message from passing as
// another; the subject (which names the device for a wake-up) keeps a
// genuine wake-up of one device from being replayed onto another's.
// docs/api-messaging.md specifies the format.

// Purposes of the bus messages the hub authenticates.
const (
	purposeWake = "kanal mailbox wake-up v1"
	purposeEnd  = "kanal mailbox session end v1"
)

// MinBusKey is the shortest key HubOptions.BusKey takes.
const MinBusKey = 32

const tagSize = sha256.Size

// macs holds keyed HMAC-SHA-256 states for busTag. hmac.New allocates
// both digests and hashes the key's two padded blocks for every message;
// a pooled state's Reset restores those blocks from what it saved at its
// first use. A node has one key; a state pooled for another key is
// dropped, never used.
var macs sync.Pool

type keyedMAC struct {
	key  []byte
	h    hash.Hash
	head []byte // purpose || 0x00 || subject || 0x00, written at once
}

func busTag(key []byte, purpose, subject string, payload []byte) []byte {
	m, _ := macs.Get().(*keyedMAC)
	if m == nil || subtle.ConstantTimeCompare(m.key, key) != 1 {
		m = &keyedMAC{key: slices.Clone(key), h: hmac.New(sha256.New, key)}
	} else {
		m.h.Reset()
	}
	m.head = append(append(append(append(m.head[:0], purpose...), 0), subject...), 0)
	m.h.Write(m.head)
	m.h.Write(payload)
	tag := m.h.Sum(make([]byte, 0, tagSize))
	macs.Put(m)
	return tag
}

// sealBus returns payload with its tag in front.
func sealBus(key []byte, purpose, subject string, payload []byte) []byte {
	out := make([]byte, 0, tagSize+len(payload))
	out = append(out, busTag(key, purpose, subject, payload)...)
	return append(out, payload...)
}

// openBus returns the payload of a sealed message, ok only when its tag is
// the one key makes for purpose and subject.
func openBus(key []byte, purpose, subject string, data []byte) (payload []byte, ok bool) {
	if len(data) < tagSize {
		return nil, false
	}
	payload = data[tagSize:]
	if !hmac.Equal(data[:tagSize], busTag(key, purpose, subject, payload)) {
		return nil, false
	}
	return payload, true
}

// sealInPlace fills in the tag of msg, whose first tagSize bytes are kept
// for it and the payload follows, and returns msg.
func sealInPlace(key []byte, purpose, subject string, msg []byte) []byte {
	copy(msg, busTag(key, purpose, subject, msg[tagSize:]))
	return msg
}
