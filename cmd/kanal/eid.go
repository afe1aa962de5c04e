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
	"github.com/kanal-server/kanal/identity/ca"
	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/identity/keystore"
	mclient "github.com/kanal-server/kanal/messaging/client"
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
	var noWait, revoke bool
	var shareOrg string
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
may then be linked to another account. An agent of an organisation that
requires an eID of its agents cannot unlink until an admin there has
removed them.`,
			run: eidUnlink,
		},
		{
			name: "eid share-name", args: "--org <org-id> [--revoke]", nargs: 0,
			summary: "show your eID-verified name to an office's agents, or stop showing it",
			help: `With your consent for this organisation, your device sends the name your
eID login proved to the office's agents, end to end in your conversation
with the office; their screens show you as "Erika Mustermann ✓eID".
The name is signed by this kanal deployment after your eID login at level
high ('kanal eid link'); the server does not keep it, and other offices do
not see it. Your consent is kept on this device. After a new eID login the
new name goes to the offices you agreed to with your next message there.

--revoke ends your consent for the office and tells its agents' devices
to forget the name (what an agent has already read cannot be taken back).`,
			flags: func(fs *flag.FlagSet, _ *opts) {
				fs.StringVar(&shareOrg, "org", "", "the `organisation` whose agents may see your verified name")
				fs.BoolVar(&revoke, "revoke", false, "end the consent for this organisation")
			},
			run: func(ctx context.Context, c *cli, o *opts, _ []string) error {
				return eidShareName(ctx, c, o, shareOrg, revoke)
			},
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
	res, err := identity.OpenEIDResult(priv, flow, done.Attributes)
	if err != nil {
		st.Save()
		return err
	}
	attrs := res.EIDAttributes
	b, _ := json.Marshal(attrs)
	setSecret(st, secretEIDAttributes, string(b))
	// The verified name for offices replaces an earlier one; it leaves
	// this device only with the citizen's consent (kanal eid share-name).
	var verified *identity.VerifiedName
	if res.VerifiedName != nil {
		if err := mclient.KeepVerifiedName(mclient.NewKeystoreStore(st), res.VerifiedName); err != nil {
			st.Save()
			return fmt.Errorf("the verified name from the eID login is damaged: %w", err)
		}
		verified, _ = identity.ParseVerifiedName(res.VerifiedName.Statement)
	}
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
	if verified != nil {
		fmt.Fprintf(c.stdout, "An office sees your verified name only if you agree, per office: kanal eid share-name --org <org-id> (valid until %s).\n",
			verified.ExpiresAt.Local().Format(time.DateOnly))
	}
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
	if err := mclient.ForgetVerifiedName(mclient.NewKeystoreStore(st)); err != nil {
		return err
	}
	if err := st.Save(); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, "eID unlinked: this account's sessions are at most level substantial.")
	return nil
}

func eidShareName(ctx context.Context, c *cli, o *opts, org string, revoke bool) error {
	if !strings.HasPrefix(org, "org_") || !ca.ValidID(org) {
		return &usageError{cmd: "eid share-name", msg: "--org must name an organisation (org_…)"}
	}
	s, err := c.openChat(ctx, o)
	if err != nil {
		return err
	}
	if revoke {
		if err := s.mc.WithdrawVerifiedName(ctx, org); err != nil {
			return explainSend(err)
		}
		fmt.Fprintf(c.stdout, "%s no longer sees your verified name: your consent is withdrawn and its agents' devices forget it.\n", s.names.org(org))
		return nil
	}
	_, v, err := mclient.OwnVerifiedName(mclient.NewKeystoreStore(s.st))
	switch {
	case err != nil:
		return err
	case v == nil:
		return errors.New("this device has no eID-verified name: link your eID first (kanal eid link)")
	case !c.now().Before(v.ExpiresAt):
		return errors.New("your eID-verified name has expired: log in with your eID again (kanal eid link)")
	}
	if err := s.mc.ConsentVerifiedName(org); err != nil {
		return err
	}
	if err := s.mc.ShareVerifiedName(ctx, org); err != nil {
		return explainSend(err)
	}
	fmt.Fprintf(c.stdout, "%s now sees you as %q, verified by eID (until %s). Withdraw with: kanal eid share-name --org %s --revoke\n",
		s.names.org(org), oneLine(v.Name), v.ExpiresAt.Local().Format(time.DateOnly), org)
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
