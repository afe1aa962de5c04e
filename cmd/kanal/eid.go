package main

import (
	"context"
	"crypto/hpke"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/kanal-server/kanal/identity"
	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/identity/keystore"
)

// Key store entries of an eID login in progress and of its result.
const (
	secretEIDFlow    = "kanal.eid_flow"     // the flow id
	secretEIDSeal    = "kanal.eid_seal_key" // the HPKE private key the attributes are sealed to
	secretEIDExpires = "kanal.eid_expires"
	// secretEIDAttributes is the JSON of the verified attributes: they
	// live in this encrypted key store, never on the server.
	secretEIDAttributes = "kanal.eid_attributes"
)

// eidPoll is how often 'kanal eid link' asks whether the browser is back.
const eidPoll = 2 * time.Second

func eidCommands() []*command {
	var noWait bool
	return []*command{
		{
			name: "eid link", args: "[--no-wait]", nargs: 0,
			summary: "link your eID (nPA, BundID) and raise this session to level high",
			help: `Needs a substantial session ('kanal login'). Prints the eID provider's
address: open it in a browser and log in with your ID card. The provider
sends the browser back to kanal; this command waits for that and then
proves this device's key, which makes the session level high. The name,
date of birth and address the provider releases come to this device
sealed to a key made for this login, and are kept only in the key store.

--no-wait prints the address and returns; finish with 'kanal eid finish'
once the browser is back. One eID links to one account only.`,
			flags: func(fs *flag.FlagSet, _ *opts) {
				fs.BoolVar(&noWait, "no-wait", false, "print the address and return; finish with 'kanal eid finish'")
			},
			run: func(ctx context.Context, c *cli, o *opts, _ []string) error { return eidLink(ctx, c, o, noWait) },
		},
		{
			name: "eid finish", args: "", nargs: 0,
			summary: "finish an eID login started with 'kanal eid link --no-wait'",
			run:     func(ctx context.Context, c *cli, o *opts, _ []string) error { return eidFinish(ctx, c, o, false) },
		},
		{
			name: "eid unlink", args: "", nargs: 0,
			summary: "remove the eID link of this account",
			help: `The account's sessions at level high drop to substantial, and the eID
may then be linked to another account.`,
			run: eidUnlink,
		},
	}
}

func eidLink(ctx context.Context, c *cli, o *opts, noWait bool) error {
	st, api, err := c.openSession(ctx, o)
	if err != nil {
		return err
	}
	priv, sealKey, err := identity.NewEIDSealKey()
	if err != nil {
		return err
	}
	privBytes, err := priv.Bytes()
	if err != nil {
		return err
	}
	start, err := api.EIDStart(ctx, sealKey)
	if err != nil {
		return err
	}
	setSecret(st, secretEIDFlow, start.FlowID)
	setSecret(st, secretEIDSeal, base64.StdEncoding.EncodeToString(privBytes))
	setTime(st, secretEIDExpires, start.ExpiresAt)
	if err := st.Save(); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Open this address in a browser and log in with your eID (until %s):\n\n  %s\n\n",
		start.ExpiresAt.Local().Format(time.TimeOnly), start.URL)
	if noWait {
		fmt.Fprintln(c.stdout, "Then: kanal eid finish")
		return nil
	}
	fmt.Fprintln(c.stdout, "Waiting for the eID login …")
	return eidFinish(ctx, c, o, true)
}

func eidFinish(ctx context.Context, c *cli, o *opts, wait bool) error {
	st, api, err := c.openSession(ctx, o)
	if err != nil {
		return err
	}
	flow := getSecret(st, secretEIDFlow)
	if flow == "" {
		return errors.New("no eID login in progress: run 'kanal eid link'")
	}
	raw, err := base64.StdEncoding.DecodeString(getSecret(st, secretEIDSeal))
	if err != nil {
		return fmt.Errorf("the key store's eID login is damaged: %w", err)
	}
	priv, err := hpke.MLKEM768X25519().NewPrivateKey(raw)
	if err != nil {
		return fmt.Errorf("the key store's eID login is damaged: %w", err)
	}
	expires := getTime(st, secretEIDExpires)
	var done *identity.EIDCompleteResponse
	for {
		done, err = api.EIDComplete(ctx, st.Data.DeviceID, st.Data.DeviceKey, flow)
		var p *idclient.Problem
		if !errors.As(err, &p) || p.Type != string(identity.TypeEIDPending) {
			break
		}
		if !wait {
			return errors.New("the browser has not come back from the eID provider yet: finish the login there, then run 'kanal eid finish' again")
		}
		if !expires.IsZero() && c.now().After(expires.Add(identity.EIDFreshness)) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(eidPoll):
		}
	}
	// Whatever the answer, this login is over.
	setSecret(st, secretEIDFlow, "")
	setSecret(st, secretEIDSeal, "")
	setSecret(st, secretEIDExpires, "")
	if err != nil {
		if serr := st.Save(); serr != nil {
			return serr
		}
		return err
	}
	attrs, err := identity.OpenEIDAttributes(priv, flow, done.Attributes)
	if err != nil {
		st.Save()
		return err
	}
	b, _ := json.Marshal(attrs)
	setSecret(st, secretEIDAttributes, string(b))
	setSecret(st, secretLevel, done.Level)
	if err := st.Save(); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "eID linked: this session is level %s.\n", done.Level)
	if attrs.Name != "" {
		fmt.Fprintf(c.stdout, "Verified name: %s\n", oneLine(attrs.Name))
	}
	if attrs.Birthdate != "" {
		fmt.Fprintf(c.stdout, "Born:          %s\n", oneLine(attrs.Birthdate))
	}
	if a := attrs.Address; a != nil {
		parts := []string{a.StreetAddress, strings.TrimSpace(a.PostalCode + " " + a.Locality), a.Country}
		if a.Formatted != "" {
			parts = []string{a.Formatted}
		}
		var keep []string
		for _, p := range parts {
			if p = oneLine(strings.TrimSpace(p)); p != "" {
				keep = append(keep, p)
			}
		}
		fmt.Fprintf(c.stdout, "Address:       %s\n", strings.Join(keep, ", "))
	}
	fmt.Fprintln(c.stdout, "(kept on this device only, in the key store)")
	return nil
}

func eidUnlink(ctx context.Context, c *cli, o *opts, _ []string) error {
	st, api, err := c.openSession(ctx, o)
	if err != nil {
		return err
	}
	if err := api.EIDUnlink(ctx); err != nil {
		return err
	}
	setSecret(st, secretEIDAttributes, "")
	if err := st.Save(); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, "eID unlinked: this account's sessions are at most level substantial.")
	return nil
}

// eidAttributes are the verified attributes kept in the key store, nil
// if none.
func eidAttributes(st *keystore.Store) *identity.EIDAttributes {
	s := getSecret(st, secretEIDAttributes)
	if s == "" {
		return nil
	}
	var a identity.EIDAttributes
	if json.Unmarshal([]byte(s), &a) != nil {
		return nil
	}
	return &a
}
