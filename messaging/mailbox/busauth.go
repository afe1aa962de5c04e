package mailbox

import (
	"crypto/hmac"
	"crypto/sha256"
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

func busTag(key []byte, purpose, subject string, payload []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(subject))
	m.Write([]byte{0})
	m.Write(payload)
	return m.Sum(nil)
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
