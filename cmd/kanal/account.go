package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"
)

func accountCommands() []*command {
	return []*command{
		{
			name: "register", args: "<email>", nargs: 1,
			summary: "start an account: the server e-mails a one-time code",
			help: `Creates the key store in KANAL_HOME if there is none (asking for a new
passphrase) and remembers the address and the server for 'kanal verify'.`,
			run: register,
		},
		verifyCommand(),
		{
			name: "password", args: "", nargs: 0,
			summary: "set or change the account password",
			help: `Reads the new password from KANAL_PASSWORD or asks on the terminal.
Right after 'kanal verify' the setup token authorises it; when logged in,
the current password is needed too (KANAL_CURRENT_PASSWORD or a prompt).`,
			run: password,
		},
		{
			name: "login", args: "[--device-only]", nargs: 0,
			summary: "log in with this device's key and the password (level substantial)",
			help: `Signs a fresh server challenge with the device key from the key store.
With the password (KANAL_PASSWORD or a prompt) as well, the session has
level substantial; --device-only logs in with the key alone.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.BoolVar(&o.deviceOnly, "device-only", false, "log in with the device key alone, without the password")
			},
			run: login,
		},
		{
			name: "logout", args: "", nargs: 0,
			summary: "end this device's session",
			run:     logout,
		},
		{
			name: "account export", args: "<file.zip>", nargs: 1,
			summary: "download everything the server holds about the account (GDPR Art. 15)",
			help: `Proves this device's key to the server, which answers with every record it
holds about the account: the account, devices, sessions, memberships, audit
entries, payment records, survey participation, push subscriptions and more.
Writes them as JSON files into a new zip archive, with a README.txt that
says what each file holds. The archive is not encrypted: keep it safe.`,
			run: accountExport,
		},
		{
			name: "account delete", args: "[--confirm <account-id>]", nargs: 0,
			summary: "erase the account on the server (GDPR Art. 17); this cannot be undone",
			help: `Erases the account: the server revokes every device, ends every session,
takes the account out of its groups and organisations (their members are
told), and deletes or pseudonymises everything it holds about it. What the
law makes it keep — the payment records, ten years under § 147 AO and
§ 257 HGB — then names a pseudonym instead of the account. Needs a
substantial session (kanal login with the password). Asks on the terminal
to type the account id; --confirm <account-id> gives it without asking.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&o.confirmID, "confirm", "", "the `account-id` of this account, to confirm without asking")
			},
			run: accountDelete,
		},
		{
			name: "whoami", args: "", nargs: 0,
			summary: "show the account, device, level of the session and whether an eID backs it",
			run:     whoami,
		},
	}
}

func register(ctx context.Context, c *cli, o *opts, args []string) error {
	email := strings.TrimSpace(args[0])
	if !strings.Contains(email, "@") {
		return &usageError{cmd: "register", msg: fmt.Sprintf("%q is not an e-mail address", email)}
	}
	st, err := c.openStore(true)
	if err != nil {
		return err
	}
	if st.Data.DeviceID != "" {
		return fmt.Errorf("this key store already holds device %s of account %s; use another KANAL_HOME for another account or device",
			st.Data.DeviceID, st.Data.AccountID)
	}
	api := c.api(o, st)
	if err := api.Signup(ctx, email); err != nil {
		return err
	}
	st.Data.ServerURL = api.BaseURL()
	setSecret(st, secretEmail, email)
	if err := st.Save(); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "A code is on its way to %s.\nNext: kanal verify <code>\n", email)
	return nil
}

func verify(ctx context.Context, c *cli, o *opts, args []string) error {
	st, err := c.openStore(false)
	if err != nil {
		return err
	}
	email := getSecret(st, secretEmail)
	if email == "" {
		return errors.New("no pending registration: run 'kanal register <email>' first")
	}
	code := strings.TrimSpace(args[0])
	res, err := c.api(o, st).VerifySignup(ctx, email, code)
	if err != nil {
		return err
	}
	if st.Data.AccountID != "" && st.Data.AccountID != res.AccountID && st.Data.DeviceID != "" {
		return fmt.Errorf("this key store belongs to account %s, the code to account %s", st.Data.AccountID, res.AccountID)
	}
	st.Data.AccountID = res.AccountID
	setSecret(st, secretSetupToken, res.SetupToken)
	setTime(st, secretSetupExpires, res.ExpiresAt)
	if err := st.Save(); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Verified %s: account %s (level low).\nNext: kanal password, then kanal device enroll\n", email, res.AccountID)
	return nil
}

func password(ctx context.Context, c *cli, o *opts, _ []string) error {
	st, err := c.openStore(false)
	if err != nil {
		return err
	}
	api, loggedIn, err := c.setupOrSession(ctx, o, st)
	if err != nil {
		return err
	}
	// The server wants the current password whenever the account has one;
	// an account enrolled before setting one has none, so it may be empty.
	var current []byte
	if loggedIn {
		if current, err = c.optionalSecret("KANAL_CURRENT_PASSWORD", "Current password (empty if none): "); err != nil {
			return fmt.Errorf("current password: %w", err)
		}
	}
	pw, err := c.secret("KANAL_PASSWORD", "New password: ", true)
	if err != nil {
		return fmt.Errorf("new password: %w", err)
	}
	if err := api.SetPassword(ctx, string(pw), string(current)); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, "Password set.")
	return nil
}

func login(ctx context.Context, c *cli, o *opts, _ []string) error {
	st, err := c.openStore(false)
	if err != nil {
		return err
	}
	if st.Data.DeviceID == "" || st.Data.DeviceKey == nil {
		return errors.New("this key store has no enrolled device: run 'kanal device enroll'")
	}
	var pw []byte
	if !o.deviceOnly {
		if pw, err = c.secret("KANAL_PASSWORD", "Password: ", false); err != nil {
			return fmt.Errorf("password: %w", err)
		}
	}
	s, err := c.api(o, st).Login(ctx, st.Data.DeviceID, st.Data.DeviceKey, string(pw))
	if err != nil {
		return err
	}
	if err := saveSession(st, s); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Logged in on device %s, level %s, until %s.\n",
		st.Data.DeviceID, s.Level, s.ExpiresAt.Local().Format(time.DateTime))
	// Publish (or top up) this device's end-to-end keys, so others can
	// reach it before it first uses the chat.
	if _, err := c.messenger(ctx, o, st); err != nil {
		fmt.Fprintf(c.stderr, "warning: this device's end-to-end keys were not published: %v\n", err)
	}
	return nil
}

func logout(ctx context.Context, c *cli, o *opts, _ []string) error {
	st, err := c.openStore(false)
	if err != nil {
		return err
	}
	if st.Data.SessionToken == "" {
		return errNotLoggedIn
	}
	// The local session goes whatever the server says: it must not be
	// used again.
	err = c.api(o, st).WithToken(st.Data.SessionToken).Logout(ctx)
	clearSession(st)
	if serr := st.Save(); serr != nil {
		return serr
	}
	if err != nil {
		return fmt.Errorf("session forgotten locally, but the server said: %w", err)
	}
	fmt.Fprintln(c.stdout, "Logged out.")
	return nil
}

func whoami(ctx context.Context, c *cli, o *opts, _ []string) error {
	st, api, err := c.openSession(ctx, o)
	if err != nil {
		return err
	}
	me, err := api.Me(ctx)
	if err != nil {
		return err
	}
	eid := "not linked (kanal eid link)"
	if me.EIDLinked {
		eid = "linked"
		if a := eidAttributes(st); a != nil && a.Name != "" {
			eid += ", verified name " + oneLine(a.Name)
		}
	}
	// Fixed columns, so that scripts can rely on the layout.
	line := func(label, value string) { fmt.Fprintf(c.stdout, "%-13s  %s\n", label, value) }
	line("account", me.AccountID)
	line("email", me.Email)
	line("device", me.DeviceID)
	level := me.Level
	if me.Proofing != "" {
		level += " (" + me.Proofing + ")"
	}
	line("level", level)
	line("eid", eid)
	line("server", api.BaseURL())
	if len(me.Organisations) == 0 {
		line("organisations", "-")
	}
	for _, m := range me.Organisations {
		line("organisation", fmt.Sprintf("%s %s (%s)", m.OrgID, oneLine(m.Name), m.Role))
	}
	return nil
}
