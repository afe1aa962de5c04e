package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/kanal-server/kanal/identity/keystore"
	mclient "github.com/kanal-server/kanal/messaging/client"
)

// The monitor. Every command that talks to the messaging side polls the
// transparency log for this account (mclient.Client.Monitor): a device
// this device did not enrol, or an identity key it did not publish,
// raises an alert. Alerts are kept in the key store and printed by every
// command that opens it, until 'kanal alerts ack'.

func alertCommands() []*command {
	return []*command{
		{
			name: "alerts", nargs: 0,
			summary: "check the transparency log for this account and list the alerts",
			help: `Reads what the deployment's transparency log recorded about this account
since the last check, verified against signed checkpoints, and lists every
alert not yet acknowledged: a device of the account that this device did
not enrol (or know of), or an identity key for this device that it did not
publish. Every kanal command prints the alerts too, until 'kanal alerts
ack'. If you did not add the device, revoke it: kanal device revoke ID.`,
			run: alertsList,
		},
		{
			name: "alerts ack", nargs: 0,
			summary: "acknowledge the alerts (a device named becomes a known one)",
			run:     alertsAck,
		},
	}
}

// alertLine is how an alert is told on stderr.
func alertLine(a mclient.Alert) string {
	s := "ALERT: " + a.String() + "."
	if a.Kind == mclient.AlertForeignDevice {
		s += fmt.Sprintf(" If you did not add it, revoke it: kanal device revoke %s.", a.DeviceID)
	}
	return s
}

// showAlerts prints the alerts kept in st, for every command that opens
// the key store ('kanal alerts' lists them itself).
func (c *cli) showAlerts(st *keystore.Store) {
	if c.quietAlerts {
		return
	}
	alerts, err := mclient.PendingAlerts(mclient.NewKeystoreStore(st))
	if err != nil || len(alerts) == 0 {
		return
	}
	for _, a := range alerts {
		fmt.Fprintln(c.stderr, alertLine(a))
	}
	fmt.Fprintln(c.stderr, "Run 'kanal alerts' for details, 'kanal alerts ack' once you have dealt with them.")
}

// monitor polls the log once; new alerts are printed by OnAlert. A log
// that does not verify is refused and said to be, without failing the
// command.
func (c *cli) monitor(ctx context.Context, mc *mclient.Client) error {
	_, err := mc.Monitor(ctx)
	if errors.Is(err, mclient.ErrLog) {
		fmt.Fprintf(c.stderr, "WARNING: the transparency log does not verify, its answer was refused: %v\n", err)
	}
	return err
}

func alertsList(ctx context.Context, c *cli, o *opts, _ []string) error {
	st, _, err := c.openSession(ctx, o)
	if err != nil {
		return err
	}
	mc, err := c.messengerNoPoll(ctx, o, st)
	if err != nil {
		return err
	}
	if err := c.monitor(ctx, mc); err != nil {
		return err
	}
	alerts, err := mc.Alerts()
	if err != nil {
		return err
	}
	if len(alerts) == 0 {
		fmt.Fprintln(c.stdout, "No alerts: the log shows nothing about this account that this device does not know.")
		return nil
	}
	for _, a := range alerts {
		fmt.Fprintln(c.stdout, alertLine(a))
	}
	fmt.Fprintln(c.stdout, "Once dealt with: kanal alerts ack")
	return nil
}

func alertsAck(ctx context.Context, c *cli, o *opts, _ []string) error {
	st, err := c.openStore(false)
	if err != nil {
		return err
	}
	n, err := mclient.AcknowledgeAlerts(mclient.NewKeystoreStore(st))
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Acknowledged %s.\n", plural(n, "alert"))
	return nil
}
