package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/kanal-server/kanal/internal/qr"
	mclient "github.com/kanal-server/kanal/messaging/client"
)

// Pinning and safety numbers. The SDK pins the identity key of each
// contact's device when it first meets it and says when one changes;
// 'kanal safety-number' shows the numbers to compare with the contact,
// and 'kanal contact verify' records that they matched. After that a
// changed key, or a device added since, stops sends to the contact until
// it is verified again.

// safetyNumberQRPrefix starts the payload of a safety number's QR code:
// "KANAL-SN1:" and the 60 digits.
const safetyNumberQRPrefix = "KANAL-SN1:"

func trustCommands() []*command {
	return []*command{
		{
			name: "safety-number", args: "<account>", nargs: 1,
			summary: "show the safety numbers to compare with a contact, with QR codes",
			help: `Prints, for each of the contact's devices this device knows, the 60-digit
safety number of this device's identity key and that device's, and a QR
code of it ("KANAL-SN1:" and the digits). The contact's device shows the
same number for this device. Compare them in person or over a channel you
trust; if they match, run 'kanal contact verify <account>'. A contact whose
keys this device has not met yet has them fetched first.`,
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return safetyNumber(ctx, c, o, args[0])
			},
		},
		{
			name: "contact verify", args: "<account>", nargs: 1,
			summary: "mark a contact verified after comparing safety numbers",
			help: `Records that the keys this device holds for the contact's devices are the
ones whose safety numbers you compared. From then on, if one of those keys
changes or the contact has a new device, sending to them stops until you
compare and verify again.`,
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return contactVerify(ctx, c, o, args[0], true)
			},
		},
		{
			name: "contact unverify", args: "<account>", nargs: 1,
			summary: "forget that a contact was verified",
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return contactVerify(ctx, c, o, args[0], false)
			},
		},
		{
			name: "contact show", args: "<account>", nargs: 1,
			summary: "show a contact's pinned device keys and whether they are verified",
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return contactShow(ctx, c, o, args[0])
			},
		},
	}
}

func checkAccountArg(s string) error {
	if !strings.HasPrefix(s, "acc_") {
		return &usageError{msg: fmt.Sprintf("%q is not an account id (acc_…)", s)}
	}
	return nil
}

// safetyQR renders the QR code of a safety number for a terminal: two
// modules per character, dark modules as spaces (light on dark terminals;
// qr.Terminal).
func safetyQR(n mclient.DeviceSafetyNumber) (string, error) {
	m, err := qr.Modules(safetyNumberQRPrefix + n.Number.Digits())
	if err != nil {
		return "", err
	}
	return qr.Terminal(m), nil
}

// contactMessenger checks a contact's account argument, then opens the
// session and the messenger the contact commands work with. who names the
// contact for these commands: the display name it gave itself is only its
// claim, so the account id always stands next to it.
func (c *cli) contactMessenger(ctx context.Context, o *opts, account string) (mc *mclient.Client, who string, err error) {
	if err := checkAccountArg(account); err != nil {
		return nil, "", err
	}
	st, api, err := c.openSession(ctx, o)
	if err != nil {
		return nil, "", err
	}
	if mc, err = c.messenger(ctx, o, st); err != nil {
		return nil, "", err
	}
	who = account
	if name := c.names(ctx, o, st, api).displayName(account); name != "" {
		who = name + " (" + account + ")"
	}
	return mc, who, nil
}

func safetyNumber(ctx context.Context, c *cli, o *opts, account string) error {
	mc, who, err := c.contactMessenger(ctx, o, account)
	if err != nil {
		return err
	}
	nums, err := mc.SafetyNumbers(ctx, account)
	if err != nil {
		return err
	}
	ct, err := mc.Contact(account)
	if err != nil {
		return err
	}
	for _, n := range nums {
		groups := strings.Fields(n.Number.String())
		fmt.Fprintf(c.stdout, "Safety number with %s, device %s:\n\n    %s\n    %s\n\n",
			who, n.DeviceID, strings.Join(groups[:6], " "), strings.Join(groups[6:], " "))
		qr, err := safetyQR(n)
		if err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, qr)
	}
	if ct.Verified {
		fmt.Fprintf(c.stdout, "%s is verified.\n", who)
	} else {
		fmt.Fprintf(c.stdout, "If the numbers match on %s's device: kanal contact verify %s\n", who, account)
	}
	return nil
}

func contactVerify(ctx context.Context, c *cli, o *opts, account string, verify bool) error {
	mc, who, err := c.contactMessenger(ctx, o, account)
	if err != nil {
		return err
	}
	if !verify {
		if err := mc.UnverifyContact(account); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s is no longer verified.\n", who)
		return nil
	}
	ct, err := mc.Contact(account)
	if err != nil {
		return err
	}
	if len(ct.Devices) == 0 {
		// Nothing met yet: the keys are fetched as for a send, and the
		// user verifies what 'kanal safety-number' would show now.
		if _, err := mc.FetchContactKeys(ctx, account); err != nil {
			return err
		}
	}
	if err := mc.VerifyContact(account); err != nil {
		return err
	}
	if ct, err = mc.Contact(account); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Verified %s: %s.\n", who, plural(len(ct.Devices), "device"))
	return nil
}

func contactShow(ctx context.Context, c *cli, o *opts, account string) error {
	mc, who, err := c.contactMessenger(ctx, o, account)
	if err != nil {
		return err
	}
	ct, err := mc.Contact(account)
	if err != nil {
		return err
	}
	state := "not verified"
	if ct.Verified {
		state = "verified"
	}
	fmt.Fprintf(c.stdout, "%s: %s\n", who, state)
	if len(ct.Devices) == 0 {
		fmt.Fprintln(c.stdout, "  no device keys met yet")
	}
	for _, d := range ct.Devices {
		note := ""
		if d.Unverified {
			note = "  KEY CHANGED OR NEW SINCE VERIFIED: sending is blocked"
		}
		fmt.Fprintf(c.stdout, "  device %s  key %s%s\n", d.DeviceID, shortKey(d.Key.String()), note)
	}
	return nil
}

// shortKey abbreviates an identity key's text form for a listing.
func shortKey(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

// keyChanged tells the user that a contact's key changed, or that a
// verified contact has a new device.
func (c *cli) keyChanged(k mclient.KeyChange) {
	// kanal keeps no names for accounts yet: the account id is the name.
	if k.NewDevice {
		fmt.Fprintf(c.stderr, "%s has a new device (%s) since you verified them.\n", k.AccountID, k.DeviceID)
	} else {
		fmt.Fprintf(c.stderr, "%s's key changed (device %s).\n", k.AccountID, k.DeviceID)
	}
	if k.Verified {
		fmt.Fprintf(c.stderr, "Sending to %s is blocked until you compare the safety number again: kanal safety-number %s, then kanal contact verify %s\n",
			k.AccountID, k.AccountID, k.AccountID)
	} else {
		fmt.Fprintf(c.stderr, "Compare the safety number with them if you did not expect this: kanal safety-number %s\n", k.AccountID)
	}
}
