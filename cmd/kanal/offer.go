package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/identity/keystore"
	mclient "github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
	"github.com/kanal-server/kanal/payments"
	pclient "github.com/kanal-server/kanal/payments/client"
	"github.com/kanal-server/kanal/payments/jws"
)

// offerOpts are the flags of the offer commands.
type offerOpts struct {
	org, to, terms, out, status string
	highAbove                   string
	items                       itemList
	valid, timeout              time.Duration
	noSend, yes                 bool
}

// itemList collects repeated --item flags.
type itemList []jws.Item

func (l *itemList) String() string { return fmt.Sprint(len(*l), " items") }

// Set parses "description|quantity|unit price in euro|VAT percent".
func (l *itemList) Set(s string) error {
	parts := strings.Split(s, "|")
	if len(parts) != 4 {
		return errors.New(`an item is "description|quantity|unit price|VAT %", e.g. "Torte|1|45.00|7"`)
	}
	it, err := pclient.ParseItem(parts[0], parts[1], parts[2], parts[3])
	if err != nil {
		return err
	}
	*l = append(*l, it)
	return nil
}

func offerCommands() []*command {
	var fo offerOpts
	return []*command{
		{
			name: "offer send", args: "--org ORG --to ACCOUNT --item 'what|qty|price|VAT%' … [--valid 72h] [--terms TEXT] [--high-above EUR] [--out offer.jws]", nargs: 0,
			summary: "sign an offer as the organisation's seller and send it in the chat",
			help: `Signs the offer with this device's key, with the device certificate and the
membership certificate that ties the device to the organisation (a JWS
with x5c), and sends it to the citizen as an offer message. Prices are
gross (VAT included), in euro. Prints the offer id.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&fo.org, "org", "", "the selling organisation's `id`")
				fs.StringVar(&fo.to, "to", "", "the citizen's `account` id")
				fs.Var(&fo.items, "item", `an item "description|quantity|unit price|VAT %" (repeat)`)
				fs.DurationVar(&fo.valid, "valid", 72*time.Hour, "how long the offer can be accepted")
				fs.StringVar(&fo.terms, "terms", "", "the terms of the offer")
				fs.StringVar(&fo.highAbove, "high-above", "", "above this total in `euro`, the buyer must accept at level high (kanal eid link)")
				fs.StringVar(&fo.out, "out", "", "also write the offer JWS to this `file`")
				fs.BoolVar(&fo.noSend, "no-send", false, "only sign and write --out; do not send")
			},
			run: func(ctx context.Context, c *cli, o *opts, _ []string) error { return offerSend(ctx, c, o, &fo) },
		},
		{
			name: "offer list", args: "", nargs: 0,
			summary: "list the offers received in the chat",
			help: `Lists the offers this device has received (kept with the chat history):
id, seller, total, validity, and whether the offer verifies and can still
be accepted. Show one with 'kanal offer show ID', accept it with
'kanal offer sign ID'.`,
			run: func(ctx context.Context, c *cli, o *opts, _ []string) error { return offerList(c) },
		},
		{
			name: "offer show", args: "<offer-id>", nargs: 1,
			summary: "show a received offer: items, total, seller, validity",
			run:     func(ctx context.Context, c *cli, o *opts, args []string) error { return offerShow(c, args[0]) },
		},
		{
			name: "offer sign", args: "[offer-id | offer.jws] [--yes] [--out contract.jws]", nargs: -1,
			summary: "countersign an offer (received earlier, from a file, or the next in the chat) into a contract",
			help: `Verifies the offer (the seller's signature, certificates and membership,
that it is addressed to this account and still valid, that the seller's
device is not revoked), prints it, countersigns the exact offer bytes with
this device's key, registers the contract with kanald by its hash, and
sends it back to the organisation as a contract message. The seller's
membership is checked with the organisation's signed status of it. Needs level
substantial. Writes the contract to --out (default contract.jws).

The argument is the id of an offer already received (see 'kanal offer
list') or a file; without one, the next offer to arrive in the chat. A
countersignature is binding: after showing the offer, kanal asks for
"yes" on the terminal, or takes --yes.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.BoolVar(&fo.yes, "yes", false, "countersign without asking (the offer is still shown)")
				fs.StringVar(&fo.out, "out", "contract.jws", "write the contract JWS to this `file`")
				fs.DurationVar(&fo.timeout, "timeout", 20*time.Second, "how long to wait for an offer in the chat")
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return offerSign(ctx, c, o, &fo, args)
			},
		},
		{
			name: "pay wait", args: "<request-id> [--status paid] [--timeout 30s]", nargs: 1,
			summary: "wait in the chat for a payment.status message about a request",
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&fo.status, "status", payments.StatusPaid, "the `status` to wait for")
				fs.DurationVar(&fo.timeout, "timeout", 30*time.Second, "how long to wait")
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return payWait(ctx, c, o, &fo, args[0])
			},
		},
	}
}

// caCert returns the deployment CA kept at enrolment.
func caCert(st *keystore.Store) (*x509.Certificate, error) {
	der, err := pemBlock([]byte(getSecret(st, secretCA)), "CERTIFICATE")
	if err != nil {
		return nil, fmt.Errorf("no CA certificate in the key store (enrol a device first): %w", err)
	}
	return x509.ParseCertificate(der)
}

// caRoots is the deployment CA from the key store, and a pool holding it
// for verifying offers and contracts.
func caRoots(st *keystore.Store) (*x509.Certificate, *x509.CertPool, error) {
	caC, err := caCert(st)
	if err != nil {
		return nil, nil, err
	}
	roots, err := ca.TrustPool(caC, storedIntermediates(st))
	if err != nil {
		return nil, nil, err
	}
	return caC, roots, nil
}

// storedIntermediates are the CA's issuing intermediates the key store
// keeps from enrolment (none when the deployment's root issues).
func storedIntermediates(st *keystore.Store) []*x509.Certificate {
	cs, _ := ca.ParseCertificatesPEM([]byte(getSecret(st, secretIntermediates)))
	return cs
}

// messenger returns this device's end-to-end client, publishing its keys
// on first use so that others can reach it.
func (c *cli) messenger(ctx context.Context, o *opts, st *keystore.Store) (*mclient.Client, error) {
	mc, err := c.messengerNoPoll(ctx, o, st)
	if err != nil {
		return nil, err
	}
	// Each command that uses the messaging side checks the log for this
	// account; a failed check is told, not fatal (a refused log changes
	// nothing kept).
	if err := c.monitor(ctx, mc); err != nil && !errors.Is(err, mclient.ErrLog) {
		fmt.Fprintf(c.stderr, "WARNING: the transparency log could not be checked: %v\n", err)
	}
	return mc, nil
}

// messengerNoPoll is messenger without the monitor's poll.
func (c *cli) messengerNoPoll(ctx context.Context, o *opts, st *keystore.Store) (*mclient.Client, error) {
	if st.Data.DeviceKey == nil {
		return nil, errors.New("no device key: run 'kanal device enroll'")
	}
	caC, err := caCert(st)
	if err != nil {
		return nil, err
	}
	mc, err := mclient.New(mclient.Options{BaseURL: c.serverURL(o, st), Token: st.Data.SessionToken, AccountID: st.Data.AccountID,
		DeviceID: st.Data.DeviceID, DeviceKey: st.Data.DeviceKey, DeviceCertificate: st.Data.DeviceCertPEM, CA: caC,
		Intermediates: storedIntermediates(st), Store: mclient.NewKeystoreStore(st), OnNewDevice: func(n mclient.NewDevice) { c.newDevice(st, n) },
		OnKeyChange: c.keyChanged, OnAlert: func(a mclient.Alert) { fmt.Fprintln(c.stderr, alertLine(a)) }})
	if err != nil {
		return nil, err
	}
	if _, err := mc.Replenish(ctx); err != nil {
		return nil, fmt.Errorf("publish this device's keys: %w", err)
	}
	return mc, nil
}

// send sends one typed message to peer.
func (c *cli) send(ctx context.Context, o *opts, st *keystore.Store, to mclient.Peer, body kind.Body) error {
	mc, err := c.messenger(ctx, o, st)
	if err != nil {
		return err
	}
	m, err := kind.New("kanal-cli-"+newKey(), c.now(), body)
	if err != nil {
		return err
	}
	_, err = mc.Send(ctx, to, m)
	return explainSend(err)
}

// sendPaymentRequest sends r to its payer, as the organisation.
func (c *cli) sendPaymentRequest(ctx context.Context, o *opts, st *keystore.Store, r *payments.Request) error {
	return c.send(ctx, o, st, mclient.Peer{OrgID: r.OrgID, AccountID: r.PayerAccount}, &kind.PaymentRequestBody{
		RequestID: r.RequestID, AmountCents: r.AmountCents, Currency: r.Currency, Creditor: r.Creditor, IBAN: r.IBAN,
		Reference: r.Reference, DueDate: r.DueDate, Purpose: r.Purpose, BIC: r.BIC, ContractID: r.ContractID})
}

// receiveProblem is what the user is told about an envelope that could
// not be read. One that claims to come from kanal but is not a notice the
// deployment signed for this device is a forgery or a replay, and is said
// to be one.
func receiveProblem(re *mclient.ReceiveError) string {
	if errors.Is(re, mclient.ErrBadNotice) {
		return fmt.Sprintf("refused a message claiming to come from kanal: it is not signed by the deployment for this device (%v)", re.Err)
	}
	return fmt.Sprintf("unreadable message from %s: %v", re.SenderDevice, re.Err)
}

// receive reads this device's mailbox until match accepts a message or
// timeout passes. Every message read, matched or not, goes into the chat
// history before it is acknowledged, so 'kanal inbox' still shows it.
func (c *cli) receive(ctx context.Context, o *opts, st *keystore.Store, timeout time.Duration, match func(*mclient.Incoming) bool) (*mclient.Incoming, error) {
	mc, err := c.messenger(ctx, o, st)
	if err != nil {
		return nil, err
	}
	hist, err := loadHistory(mclient.NewKeystoreStore(st))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s, err := mc.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	for {
		in, err := s.Receive(ctx)
		var re *mclient.ReceiveError
		switch {
		case errors.As(err, &re):
			fmt.Fprintln(c.stderr, receiveProblem(re))
			continue
		case errors.Is(err, context.DeadlineExceeded):
			return nil, fmt.Errorf("nothing arrived within %v", timeout)
		case err != nil:
			return nil, err
		}
		if _, ok := in.Message.Body.(*kind.ReceiptBody); !ok {
			if err := hist.add(entryOf(in)); err != nil {
				return nil, err
			}
		}
		if match(in) {
			return in, s.Ack(ctx)
		}
		fmt.Fprintf(c.stderr, "(also received %s; kept for 'kanal inbox')\n", in.Message.Kind)
	}
}

func offerSend(ctx context.Context, c *cli, o *opts, fo *offerOpts) error {
	if fo.org == "" || fo.to == "" || len(fo.items) == 0 {
		return &usageError{cmd: "offer send", msg: "give --org, --to and at least one --item"}
	}
	st, api, err := c.openSession(ctx, o)
	if err != nil {
		return err
	}
	p := pclient.OfferParams{OrgID: fo.org, OrgName: fo.org, BuyerAccount: fo.to, Items: fo.items, Valid: fo.valid, Terms: fo.terms}
	if fo.highAbove != "" {
		if p.HighAboveCents, err = parseEuro(fo.highAbove); err != nil {
			return fmt.Errorf("--high-above: %w", err)
		}
	}
	offer, err := pclient.BuildOffer(p, c.now())
	if err != nil {
		return err
	}
	devDER, err := pemBlock(st.Data.DeviceCertPEM, "CERTIFICATE")
	if err != nil {
		return err
	}
	_, roots, err := caRoots(st)
	if err != nil {
		return err
	}
	signed, offer, err := pclient.SignOffer(ctx, api, offer, pclient.SellerDevice{DeviceID: st.Data.DeviceID, Key: st.Data.DeviceKey, DeviceCert: devDER}, roots)
	if err != nil {
		return err
	}
	if fo.out != "" {
		if err := os.WriteFile(fo.out, []byte(signed+"\n"), 0o644); err != nil {
			return err
		}
	}
	// kanald registers the offer now, while this device is a current
	// member and the offer's issued_at is close to its clock: only a
	// registered offer becomes a registered contract.
	pay := pclient.New(c.serverURL(o, st), st.Data.SessionToken, nil)
	if _, _, err := pay.RegisterOffer(ctx, signed); err != nil {
		return fmt.Errorf("register the offer: %w", err)
	}
	if !fo.noSend {
		if err := c.send(ctx, o, st, mclient.Peer{OrgID: offer.OrgID, AccountID: fo.to}, &kind.OfferBody{OfferID: offer.OfferID, JWS: signed}); err != nil {
			return fmt.Errorf("send the offer: %w", err)
		}
		fmt.Fprintf(c.stderr, "Sent offer over %s to %s.\n", euro(offer.TotalCents), fo.to)
	}
	fmt.Fprintln(c.stdout, offer.OfferID)
	return nil
}

func offerSign(ctx context.Context, c *cli, o *opts, fo *offerOpts, args []string) error {
	if len(args) > 1 {
		return &usageError{cmd: "offer sign", msg: "at most one offer file"}
	}
	st, api, err := c.openSession(ctx, o)
	if err != nil {
		return err
	}
	var offerJWS string
	if len(args) == 1 && !fileExists(args[0]) && args[0] != "-" {
		if offerJWS, err = receivedOffer(st, args[0]); err != nil {
			return err
		}
	} else if len(args) == 1 {
		b, err := readInput(c, args[0], jws.MaxJWS+1024)
		if err != nil {
			return err
		}
		offerJWS = strings.TrimSpace(string(b))
	} else {
		in, err := c.receive(ctx, o, st, fo.timeout, func(in *mclient.Incoming) bool { return in.Message.Kind == kind.Offer })
		if err != nil {
			return fmt.Errorf("waiting for an offer: %w", err)
		}
		offerJWS = in.Message.Body.(*kind.OfferBody).JWS
	}
	caC, roots, err := caRoots(st)
	if err != nil {
		return err
	}
	vo, err := jws.VerifyOffer(offerJWS, roots)
	if err != nil {
		return err
	}
	printOffer(c.stdout, vo)
	if err := c.confirm(fo.yes, "Countersign this offer? This is a binding signature. Type yes: "); err != nil {
		return err
	}
	devDER, err := pemBlock(st.Data.DeviceCertPEM, "CERTIFICATE")
	if err != nil {
		return err
	}
	contract, err := pclient.Countersign(ctx, api, offerJWS, vo, jws.Buyer{Key: st.Data.DeviceKey, DeviceCert: devDER}, caC, c.now(), storedIntermediates(st)...)
	if err != nil {
		return err
	}
	if err := os.WriteFile(fo.out, []byte(contract+"\n"), 0o644); err != nil {
		return err
	}
	// The same key store throughout: a second copy would overwrite the
	// end-to-end state this one saved.
	pay := pclient.New(c.serverURL(o, st), st.Data.SessionToken, nil)
	info, _, err := pay.RegisterContract(ctx, jws.ContractID(contract), contract)
	if err != nil {
		return fmt.Errorf("register the contract (written to %s): %w", fo.out, err)
	}
	if err := c.send(ctx, o, st, mclient.Peer{OrgID: vo.Offer.OrgID}, &kind.ContractBody{ContractID: info.ContractID, JWS: contract}); err != nil {
		return fmt.Errorf("contract %s registered and written to %s, but sending it failed: %w", info.ContractID, fo.out, err)
	}
	fmt.Fprintf(c.stderr, "Countersigned; contract written to %s, registered and sent to %s.\n", fo.out, vo.Offer.OrgName)
	fmt.Fprintln(c.stdout, info.ContractID)
	return nil
}

func payWait(ctx context.Context, c *cli, o *opts, fo *offerOpts, id string) error {
	st, err := c.openStore(false)
	if err != nil {
		return err
	}
	if _, err := c.session(ctx, o, st); err != nil {
		return err
	}
	in, err := c.receive(ctx, o, st, fo.timeout, func(in *mclient.Incoming) bool {
		b, ok := in.Message.Body.(*kind.PaymentStatusBody)
		return ok && in.FromServer && b.RequestID == id && b.Status == fo.status
	})
	if err != nil {
		return err
	}
	b := in.Message.Body.(*kind.PaymentStatusBody)
	fmt.Fprintf(c.stdout, "%s %s %s\n", b.RequestID, b.Status, euro(b.AmountCents))
	return nil
}

func fileExists(name string) bool {
	_, err := os.Stat(name)
	return err == nil
}

// receivedOffers returns the offers kept with the chat history, oldest
// first.
func receivedOffers(st *keystore.Store) ([]entry, error) {
	h, err := loadHistory(mclient.NewKeystoreStore(st))
	if err != nil {
		return nil, err
	}
	var out []entry
	for _, e := range h.entries {
		if e.Kind == string(kind.Offer) && e.JWS != "" {
			out = append(out, e)
		}
	}
	return out, nil
}

// receivedOffer finds a received offer by its offer id (the newest if
// the seller sent it more than once).
func receivedOffer(st *keystore.Store, id string) (string, error) {
	offers, err := receivedOffers(st)
	if err != nil {
		return "", err
	}
	for i := len(offers) - 1; i >= 0; i-- {
		if offers[i].Text == "offer "+id {
			return offers[i].JWS, nil
		}
	}
	return "", fmt.Errorf("no offer %s has been received (and no such file); see 'kanal offer list'", id)
}

func offerList(c *cli) error {
	st, err := c.openStore(false)
	if err != nil {
		return err
	}
	offers, err := receivedOffers(st)
	if err != nil {
		return err
	}
	if len(offers) == 0 {
		fmt.Fprintln(c.stderr, "No offers received yet.")
		return nil
	}
	_, roots, err := caRoots(st)
	if err != nil {
		return err
	}
	for _, e := range offers {
		vo, err := jws.VerifyOffer(e.JWS, roots)
		if err != nil {
			fmt.Fprintf(c.stdout, "%s\tfrom %s\tdoes not verify: %v\n", strings.TrimPrefix(e.Text, "offer "), e.From, err)
			continue
		}
		o := vo.Offer
		state := "open"
		if !c.now().Before(o.ValidUntil) {
			state = "expired"
		}
		fmt.Fprintf(c.stdout, "%s\t%s\t%s\tvalid until %s\t%s\n", o.OfferID, o.OrgName, euro(o.TotalCents),
			o.ValidUntil.UTC().Format(time.RFC3339), state)
	}
	return nil
}

func offerShow(c *cli, id string) error {
	st, err := c.openStore(false)
	if err != nil {
		return err
	}
	offerJWS, err := receivedOffer(st, id)
	if err != nil {
		return err
	}
	_, roots, err := caRoots(st)
	if err != nil {
		return err
	}
	vo, err := jws.VerifyOffer(offerJWS, roots)
	if err != nil {
		return err
	}
	printOffer(c.stdout, vo)
	if !c.now().Before(vo.Offer.ValidUntil) {
		fmt.Fprintln(c.stdout, "  expired: it can no longer be accepted")
	}
	return nil
}
