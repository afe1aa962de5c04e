package identity

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestDevicesOf: the devices of several accounts come back in one list,
// each with its account, without revoked devices and without accounts
// that were not asked for; too many accounts is an error, not a query.
func TestDevicesOf(t *testing.T) {
	runDB(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		alice := e.newUser("alice@example.org", "")
		bob := e.newUser("bob@example.org", "")
		carol := e.newUser("carol@example.org", "")
		dave := e.newUser("dave@example.org", "")
		if err := e.svc.RevokeDevice(ctx, dave.device, dave.account); err != nil {
			t.Fatal(err)
		}
		got, err := e.svc.DevicesOf(ctx, []string{alice.account, bob.account, dave.account, "acc_nosuchaccount"})
		if err != nil {
			t.Fatal(err)
		}
		var pairs []string
		for _, d := range got {
			if d.Certificate != nil {
				t.Fatalf("device %s came with a certificate", d.DeviceID)
			}
			pairs = append(pairs, d.AccountID+"/"+d.DeviceID)
		}
		want := []string{alice.account + "/" + alice.device, bob.account + "/" + bob.device}
		slices.Sort(pairs)
		slices.Sort(want)
		if !slices.Equal(pairs, want) {
			t.Fatalf("DevicesOf = %v, want %v (carol %s not asked, dave's device revoked)", pairs, want, carol.account)
		}
		// A broadcast's followers: more accounts than one SQLite
		// statement names, the known ones in later parts.
		followers := make([]string, 2*devicesOfChunk+500)
		for i := range followers {
			followers[i] = fmt.Sprintf("acc_follower%05d", i)
		}
		followers[devicesOfChunk+1], followers[len(followers)-1], followers[7] = alice.account, bob.account, dave.account
		got, err = e.svc.DevicesOf(ctx, followers)
		if err != nil {
			t.Fatal(err)
		}
		pairs = nil
		for _, d := range got {
			pairs = append(pairs, d.AccountID+"/"+d.DeviceID)
		}
		slices.Sort(pairs)
		if !slices.Equal(pairs, want) {
			t.Fatalf("DevicesOf(%d accounts) = %v, want %v", len(followers), pairs, want)
		}
		if ds, err := e.svc.DevicesOf(ctx, nil); err != nil || len(ds) != 0 {
			t.Fatalf("no accounts: %v %v", ds, err)
		}
		many := make([]string, MaxDevicesOfAccounts+1)
		for i := range many {
			many[i] = alice.account
		}
		if _, err := e.svc.DevicesOf(ctx, many); err == nil || !strings.Contains(err.Error(), "at most") {
			t.Fatalf("%d accounts: %v", len(many), err)
		}
	})
}
