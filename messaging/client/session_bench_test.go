//go:build unix

package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"syscall"
	"testing"
	"time"

	"github.com/kanal-server/kanal/internal/kanaldtest"
	"github.com/kanal-server/kanal/messaging/client"
)

// benchSession signs alice and bob up on a kanald of their own, starts
// alice's session with bob and exchanges one message each way through the
// SDK, so both sides are past the initial message: what is measured after
// it is what every later message costs a device.
func benchSession(b *testing.B) (aliceSDK, bobSDK *client.Client, aliceDev, bobDev string) {
	b.Helper()
	ctx := context.Background()
	srv := kanaldtest.Start(b, kanaldBin)
	ka, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	kb, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	alice, bob := srv.SignUp(b, "alice@example.org", ka), srv.SignUp(b, "bob@example.org", kb)
	aliceSDK, bobSDK = alice.SDK(b, srv.URL, client.NewMemoryStore()), bob.SDK(b, srv.URL, client.NewMemoryStore())
	for _, c := range []*client.Client{aliceSDK, bobSDK} {
		if _, err := c.Publish(ctx); err != nil {
			b.Fatal(err)
		}
	}
	claim, err := aliceSDK.ClaimAccount(ctx, bob.AccountID)
	if err != nil || len(claim.Bundles) != 1 {
		b.Fatalf("claim: %+v %v", claim, err)
	}
	if err := aliceSDK.StartSession(claim.Bundles[0]); err != nil {
		b.Fatal(err)
	}
	m, err := aliceSDK.Encrypt(bob.DeviceID, make([]byte, 256)) // with the initial message
	if err != nil {
		b.Fatal(err)
	}
	wire, err := m.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	benchOpen(b, bobSDK, alice.DeviceID, wire)
	benchRoundTrip(b, bobSDK, aliceSDK, alice.DeviceID, bob.DeviceID, make([]byte, 256))
	return aliceSDK, bobSDK, alice.DeviceID, bob.DeviceID
}

// benchRoundTrip is what a message costs both devices: from encrypts pt for
// the device to and encodes it for the envelope; to decodes it and
// decrypts it (the sender's device as the server names it).
func benchRoundTrip(b *testing.B, from, to *client.Client, toDev, fromDev string, pt []byte) {
	wire := benchSeal(b, from, toDev, pt)
	if got := benchOpen(b, to, fromDev, wire); len(got) != len(pt) {
		b.Fatalf("decrypted %d bytes, want %d", len(got), len(pt))
	}
}

func benchSeal(b *testing.B, from *client.Client, toDev string, pt []byte) []byte {
	m, err := from.Encrypt(toDev, pt)
	if err != nil {
		b.Fatal(err)
	}
	if m.Initial != nil {
		b.Fatal("initial message still sent after the answer")
	}
	wire, err := m.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	return wire
}

func benchOpen(b *testing.B, to *client.Client, fromDev string, wire []byte) []byte {
	var m client.Message
	if err := m.UnmarshalBinary(wire); err != nil {
		b.Fatal(err)
	}
	pt, err := to.Decrypt(context.Background(), fromDev, &m)
	if err != nil {
		b.Fatal(err)
	}
	return pt
}

// processCPU is the CPU time of this process so far, all threads: the
// machine is shared, so the benchmarks report CPU per operation (cpu-ns/op)
// beside the wall clock.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds cpu-ns/op, counted from cpu0 (taken after the setup).
func reportCPU(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkSessionMessage256 measures a 256-byte message of an established
// session (the direct scenario of kanal-bench): encrypt (Client.Encrypt
// and Message.MarshalBinary, what the sender pays), decrypt
// (Message.UnmarshalBinary and Client.Decrypt, what the receiver pays), and
// exchange: one message each way per iteration, so every message steps the
// DH ratchet, as in a conversation.
func BenchmarkSessionMessage256(b *testing.B) {
	aliceSDK, bobSDK, aliceDev, bobDev := benchSession(b)
	pt := make([]byte, 256)
	b.Run("decrypt", func(b *testing.B) {
		wires := make([][]byte, b.N)
		for i := range wires {
			wires[i] = benchSeal(b, aliceSDK, bobDev, pt)
		}
		b.ReportAllocs()
		b.ResetTimer()
		cpu0 := processCPU(b)
		for i := range b.N {
			benchOpen(b, bobSDK, aliceDev, wires[i])
		}
		reportCPU(b, cpu0)
	})
	b.Run("exchange", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := processCPU(b)
		for b.Loop() {
			benchRoundTrip(b, aliceSDK, bobSDK, bobDev, aliceDev, pt)
			benchRoundTrip(b, bobSDK, aliceSDK, aliceDev, bobDev, pt)
		}
		reportCPU(b, cpu0)
	})
	// Last: bob reads none of these.
	b.Run("encrypt", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := processCPU(b)
		for b.Loop() {
			benchSeal(b, aliceSDK, bobDev, pt)
		}
		reportCPU(b, cpu0)
	})
}
