package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kanal-server/kanal/identity/keystore"
	"github.com/kanal-server/kanal/payments"
	"github.com/kanal-server/kanal/payments/camt"
	pclient "github.com/kanal-server/kanal/payments/client"
)

// payOpts are the flags of the payment commands.
type payOpts struct {
	org, to, contract, amount, creditor, iban, bic, purpose, due, reference, key string
	out, request, note, status                                                   string
	size                                                                         int
	timeout                                                                      time.Duration
}

func payCommands() []*command {
	var po payOpts
	keyFlag := func(fs *flag.FlagSet) {
		fs.StringVar(&po.key, "key", "", "Idempotency-Key (default: a fresh random one; repeat a key only to retry)")
	}
	tokenFlag := operatorTokenFlags
	return []*command{
		{
			name: "pay request", args: "--org ORG (--contract ID | --to ACCOUNT --amount 37.00) --creditor NAME --iban IBAN --purpose TEXT --due YYYY-MM-DD", nargs: 0,
			summary: "create a payment request for a contract or an office fee and send it in the chat",
			help: `Needs a substantial session and the role owner, admin, agent or seller in
the organisation. The IBAN is checked (mod 97); the RF creditor reference
is generated unless --reference gives one. Prints the request id. The
request is sent to the payer as a payment.request message.

Without --key, the Idempotency-Key is derived from the account and the
request's parameters: running the same command again (after a network
error, or when sending the chat message failed) answers with the request
already created and sends the message, instead of creating a second
request. Give --key to make a second request with identical parameters.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&po.org, "org", "", "the requesting organisation's `id`")
				fs.StringVar(&po.contract, "contract", "", "a registered contract's `id` (amount and payer come from it)")
				fs.StringVar(&po.to, "to", "", "the payer's `account` id (for a fee)")
				fs.StringVar(&po.amount, "amount", "", "the `amount` in euro, e.g. 37.00 (for a fee)")
				fs.StringVar(&po.creditor, "creditor", "", "the creditor's `name` (at most 70 characters)")
				fs.StringVar(&po.iban, "iban", "", "the creditor's `IBAN`")
				fs.StringVar(&po.bic, "bic", "", "the creditor's `BIC` (optional)")
				fs.StringVar(&po.purpose, "purpose", "", "what the payment is for")
				fs.StringVar(&po.due, "due", "", "due `date`, YYYY-MM-DD")
				fs.StringVar(&po.reference, "reference", "", "an RF creditor `reference` to use")
				fs.StringVar(&po.key, "key", "", "Idempotency-Key (default: derived from the account and the parameters, so that running the same command again retries it)")
			},
			run: func(ctx context.Context, c *cli, o *opts, _ []string) error { return payRequest(ctx, c, o, &po) },
		},
		{
			name: "pay show", args: "<request-id>", nargs: 1,
			summary: "show a payment request and its history",
			run:     func(ctx context.Context, c *cli, o *opts, args []string) error { return payShow(ctx, c, o, args[0]) },
		},
		{
			name: "pay qr", args: "<request-id> [--out qr.png] [--size 400]", nargs: 1,
			summary: "print the EPC QR (GiroCode) payload of a request, or write its PNG",
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&po.out, "out", "", "write the QR code as a PNG to this `file`")
				fs.IntVar(&po.size, "size", 400, "PNG size in pixels (100..2000)")
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error { return payQR(ctx, c, o, &po, args[0]) },
		},
		{
			name: "pay checkout", args: "<request-id>", nargs: 1,
			summary: "pay a request by card or wallet: prints the provider's checkout URL",
			help: `Asks kanald's card and wallet provider for a checkout page and prints its
URL. A kanald without such a provider (no KANAL_PSP_URL) takes payments by
bank transfer only: then this says so and exits 1, and 'kanal pay qr'
prints the GiroCode to scan instead.`,
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return payCheckout(ctx, c, o, args[0])
			},
		},
		{
			name: "pay cancel", args: "<request-id>", nargs: 1,
			summary: "cancel an open payment request",
			run:     func(ctx context.Context, c *cli, o *opts, args []string) error { return payCancel(ctx, c, o, args[0]) },
		},
		{
			name: "pay refund", args: "<request-id> --amount 10.00", nargs: 1,
			summary: "refund part or all of a paid request (owner or admin)",
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&po.amount, "amount", "", "the `amount` in euro")
				keyFlag(fs)
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return payRefund(ctx, c, o, &po, args[0])
			},
		},
		{
			name: "admin payments import-camt", args: "<file.xml>", nargs: 1,
			summary: "import a camt.053 bank statement: match transfers, list the rest",
			help: `Entries whose RF reference and amount match an open request pay it; every
other credit is booked as unallocated and listed by 'kanal admin payments
unmatched' until resolved. Importing a statement again books nothing twice.`,
			flags: tokenFlag,
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return adminImportCAMT(ctx, c, o, args[0])
			},
		},
		{
			name: "admin payments unmatched", args: "[--status unmatched|matched|resolved]", nargs: 0,
			summary: "list imported bank entries that matched no request",
			flags: func(fs *flag.FlagSet, o *opts) {
				tokenFlag(fs, o)
				fs.StringVar(&po.status, "status", payments.EntryUnmatched, "which entries: unmatched, matched or resolved")
			},
			run: func(ctx context.Context, c *cli, o *opts, _ []string) error {
				return adminUnmatched(ctx, c, o, po.status)
			},
		},
		{
			name: "admin payments resolve", args: "<entry-id> (--request ID | --note TEXT)", nargs: 1,
			summary: "resolve an unmatched bank entry: pay a request with it, or note that it went back",
			flags: func(fs *flag.FlagSet, o *opts) {
				tokenFlag(fs, o)
				fs.StringVar(&po.request, "request", "", "the open request the money pays")
				fs.StringVar(&po.note, "note", "", "how the entry was resolved (required without --request)")
			},
			run: func(ctx context.Context, c *cli, o *opts, args []string) error {
				return adminResolve(ctx, c, o, args[0], payments.ResolveRequest{RequestID: po.request, Note: po.note})
			},
		},
		{
			name: "admin payments books", args: "", nargs: 0,
			summary: "check that the ledger balances and print its accounts",
			flags:   tokenFlag,
			run:     func(ctx context.Context, c *cli, o *opts, _ []string) error { return adminBooks(ctx, c, o) },
		},
		{
			name: "admin payments audit", args: "[--org ORG]", nargs: 0,
			summary: "print the payments audit log: who created, cancelled, refunded what, when",
			flags: func(fs *flag.FlagSet, o *opts) {
				tokenFlag(fs, o)
				fs.StringVar(&po.org, "org", "", "only this organisation")
			},
			run: func(ctx context.Context, c *cli, o *opts, _ []string) error { return adminPayAudit(ctx, c, o, po.org) },
		},
	}
}

// payAPI returns the payments client with this device's session.
func (c *cli) payAPI(ctx context.Context, o *opts) (*pclient.Client, *keystore.Store, error) {
	st, err := c.openStore(false)
	if err != nil {
		return nil, nil, err
	}
	if _, err := c.session(ctx, o, st); err != nil {
		return nil, nil, err
	}
	return pclient.New(c.serverURL(o, st), st.Data.SessionToken, nil), st, nil
}

func (c *cli) payOperator(o *opts) (*pclient.Client, error) {
	tok, err := c.operatorToken(o)
	if err != nil {
		return nil, err
	}
	return pclient.New(c.serverURL(o, nil), tok, nil), nil
}

// parseEuro reads "37", "37.5", "37.50" (or "37,50") as cents; no sign.
func parseEuro(s string) (int64, error) { return pclient.ParseEuro(s) }

func newKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func payRequest(ctx context.Context, c *cli, o *opts, po *payOpts) error {
	if po.org == "" || (po.contract == "") == (po.to == "") {
		return &usageError{cmd: "pay request", msg: "give --org and either --contract or --to with --amount"}
	}
	p := payments.CreateParams{ContractID: po.contract, PayerAccount: po.to, Creditor: po.creditor, IBAN: po.iban, BIC: po.bic,
		Purpose: po.purpose, DueDate: po.due, Reference: po.reference}
	if po.amount != "" {
		n, err := parseEuro(po.amount)
		if err != nil {
			return err
		}
		p.AmountCents = n
	}
	if err := p.Check(c.now()); err != nil {
		return err
	}
	api, st, err := c.payAPI(ctx, o)
	if err != nil {
		return err
	}
	key := po.key
	if key == "" {
		key = pclient.RequestKey(st.Data.AccountID, po.org, p)
	}
	r, replay, err := api.CreateRequest(ctx, po.org, key, p)
	if err != nil {
		return err
	}
	if replay {
		fmt.Fprintln(c.stderr, "(answered from the first request with this key)")
	}
	fmt.Fprintf(c.stderr, "Payment request for %s to %s, reference %s, due %s.\n", euro(r.AmountCents), r.PayerAccount, r.Reference, r.DueDate)
	if err := c.sendPaymentRequest(ctx, o, st, r); err != nil {
		return fmt.Errorf("created %s, but sending it in the chat failed (run the same command again to resend it; the request is not created twice): %w", r.RequestID, err)
	}
	fmt.Fprintln(c.stdout, r.RequestID)
	return nil
}

func payShow(ctx context.Context, c *cli, o *opts, id string) error {
	api, _, err := c.payAPI(ctx, o)
	if err != nil {
		return err
	}
	r, err := api.Request(ctx, id)
	if err != nil {
		return err
	}
	h, err := api.History(ctx, id)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "request\t%s\n", r.RequestID)
	fmt.Fprintf(w, "status\t%s\n", r.Status)
	fmt.Fprintf(w, "amount\t%s\n", euro(r.AmountCents))
	if r.PaidCents > 0 {
		fmt.Fprintf(w, "paid\t%s (%s)\n", euro(r.PaidCents), r.Provider)
	}
	if r.RefundedCents > 0 {
		fmt.Fprintf(w, "refunded\t%s\n", euro(r.RefundedCents))
	}
	fmt.Fprintf(w, "creditor\t%s\n", oneLine(r.Creditor))
	fmt.Fprintf(w, "iban\t%s\n", r.IBAN)
	fmt.Fprintf(w, "reference\t%s\n", r.Reference)
	fmt.Fprintf(w, "purpose\t%s\n", oneLine(r.Purpose))
	fmt.Fprintf(w, "due\t%s\n", r.DueDate)
	fmt.Fprintf(w, "payer\t%s\n", r.PayerAccount)
	fmt.Fprintf(w, "organisation\t%s\n", r.OrgID)
	if r.ContractID != "" {
		fmt.Fprintf(w, "contract\t%s\n", r.ContractID)
	}
	for _, t := range h {
		from := t.From
		if from == "" {
			from = "-"
		}
		fmt.Fprintf(w, "history\t%s %s → %s %s by %s (%s)\n", t.At.Format(time.RFC3339), from, t.To, euro(t.AmountCents), t.Actor, t.Source)
	}
	return w.Flush()
}

func payQR(ctx context.Context, c *cli, o *opts, po *payOpts, id string) error {
	api, _, err := c.payAPI(ctx, o)
	if err != nil {
		return err
	}
	if po.out == "" {
		p, err := api.EPC(ctx, id)
		if err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, p)
		return nil
	}
	png, err := api.EPCPNG(ctx, id, po.size)
	if err != nil {
		return err
	}
	if err := os.WriteFile(po.out, png, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "Wrote the EPC QR code to %s; scan it with a banking app.\n", po.out)
	return nil
}

func payCheckout(ctx context.Context, c *cli, o *opts, id string) error {
	api, _, err := c.payAPI(ctx, o)
	if err != nil {
		return err
	}
	in, err := api.Checkout(ctx, id)
	if err != nil {
		return err
	}
	if in.CheckoutURL == "" {
		return fmt.Errorf("this server takes no card payments (it has no card provider): pay by bank transfer; 'kanal pay qr %s > girocode.png' makes the GiroCode to scan", id)
	}
	fmt.Fprintln(c.stdout, in.CheckoutURL)
	return nil
}

func payCancel(ctx context.Context, c *cli, o *opts, id string) error {
	api, _, err := c.payAPI(ctx, o)
	if err != nil {
		return err
	}
	r, err := api.Cancel(ctx, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s %s\n", r.RequestID, r.Status)
	return nil
}

func payRefund(ctx context.Context, c *cli, o *opts, po *payOpts, id string) error {
	n, err := parseEuro(po.amount)
	if err != nil {
		return err
	}
	api, _, err := c.payAPI(ctx, o)
	if err != nil {
		return err
	}
	key := po.key
	if key == "" {
		key = newKey()
	}
	r, _, err := api.Refund(ctx, id, key, n)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s refunded %s, %s in total\n", r.RequestID, euro(r.AmountCents), euro(r.RefundedCents))
	return nil
}

func adminImportCAMT(ctx context.Context, c *cli, o *opts, path string) error {
	api, err := c.payOperator(o)
	if err != nil {
		return err
	}
	b, err := readInput(c, path, camt.MaxSize)
	if err != nil {
		return err
	}
	res, err := api.ImportStatement(ctx, b)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%d matched, %d unmatched, %d already imported, %d skipped (debits, not booked)\n",
		len(res.Matched), len(res.Unmatched), res.Duplicates, res.Skipped)
	for _, e := range res.Matched {
		fmt.Fprintf(c.stdout, "matched    %s  %s  %s  pays %s\n", e.ID, euro(e.AmountCents), e.Reference, e.RequestID)
	}
	for _, e := range res.Unmatched {
		fmt.Fprintf(c.stdout, "unmatched  %s  %s  %s  %s\n", e.ID, euro(e.AmountCents), oneLine(e.Debtor), oneLine(e.Note))
	}
	return nil
}

func adminUnmatched(ctx context.Context, c *cli, o *opts, status string) error {
	api, err := c.payOperator(o)
	if err != nil {
		return err
	}
	es, err := api.BankEntries(ctx, status)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ENTRY\tBOOKED\tAMOUNT\tDEBTOR\tREMITTANCE\tNOTE")
	for _, e := range es {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.BookingDate, euro(e.AmountCents), oneLine(e.Debtor), oneLine(e.Remittance), oneLine(e.Note))
	}
	return w.Flush()
}

func adminResolve(ctx context.Context, c *cli, o *opts, entry string, in payments.ResolveRequest) error {
	api, err := c.payOperator(o)
	if err != nil {
		return err
	}
	e, err := api.Resolve(ctx, entry, in)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s %s: %s\n", e.ID, e.Status, oneLine(e.Note))
	return nil
}

func adminBooks(ctx context.Context, c *cli, o *opts) error {
	api, err := c.payOperator(o)
	if err != nil {
		return err
	}
	b, err := api.Books(ctx)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "ORGANISATION\tACCOUNT\tBALANCE (debit +)\t")
	for _, a := range b.Accounts {
		org := a.OrgID
		if org == "" {
			org = "-"
		}
		sign := ""
		if a.Cents < 0 {
			sign = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s%d.%02d\t\n", org, a.Account, sign, abs(a.Cents)/100, abs(a.Cents)%100)
	}
	w.Flush()
	if !b.Balanced {
		return fmt.Errorf("the books do NOT balance: total %s, unbalanced transactions %s", payments.Euro(b.TotalCents), strings.Join(b.Unbalanced, ", "))
	}
	fmt.Fprintf(c.stdout, "balanced: %d transactions, entries sum to 0\n", b.Transactions)
	return nil
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

func adminPayAudit(ctx context.Context, c *cli, o *opts, org string) error {
	api, err := c.payOperator(o)
	if err != nil {
		return err
	}
	es, err := api.Audit(ctx, org, 0)
	if err != nil {
		return err
	}
	for _, e := range es {
		fmt.Fprintf(c.stdout, "%s  %-18s %-40s %-12s %s  %s\n", e.At.Format(time.RFC3339), e.Action, e.Actor, e.OrgID, e.Object, oneLine(e.Detail))
	}
	return nil
}
