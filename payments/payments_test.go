package payments

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/db/dbtest"
)

func run(t *testing.T, fn func(t *testing.T, w *world)) {
	dbtest.Run(t, []db.Migrations{Migrations()}, func(t *testing.T, d *db.DB) { fn(t, newWorld(t, d)) })
}

func TestFeeLifecycleAndIdempotency(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		r, replay, err := w.s.CreateRequest(ctx, actor(clerk), orgAmt, "key-1", fee())
		if err != nil || replay {
			t.Fatalf("create: %v %v", err, replay)
		}
		if r.Status != StatusOpen || r.IBAN != testIBAN || !strings.HasPrefix(r.Reference, "RF") || r.AmountCents != 3700 {
			t.Fatalf("request %+v", r)
		}
		// The same key and parameters: the first answer, nothing new.
		before := w.snapshot()
		again, replay, err := w.s.CreateRequest(ctx, actor(clerk), orgAmt, "key-1", fee())
		if err != nil || !replay || again.RequestID != r.RequestID || again.Reference != r.Reference {
			t.Fatalf("retry: %+v %v %v", again, replay, err)
		}
		w.unchanged(before, "a retried create")
		// The same key with other parameters is refused.
		other := fee()
		other.AmountCents = 3800
		if _, _, err := w.s.CreateRequest(ctx, actor(clerk), orgAmt, "key-1", other); !errors.Is(err, ErrIdempotency) {
			t.Fatalf("reused key: %v", err)
		}
		w.unchanged(before, "a reused key")

		if got, _ := w.s.Balance(ctx, orgAmt, AccReceivable); got != 3700 {
			t.Fatalf("receivable %d", got)
		}
		if _, err := w.s.Cancel(ctx, actor(clerk), r.RequestID); err != nil {
			t.Fatal(err)
		}
		if _, err := w.s.Cancel(ctx, actor(clerk), r.RequestID); !errors.Is(err, ErrState) {
			t.Fatalf("cancel twice: %v", err)
		}
		if got, _ := w.s.Balance(ctx, orgAmt, AccReceivable); got != 0 {
			t.Fatalf("receivable after cancel %d", got)
		}
		h, err := w.s.History(ctx, actor(citizen), r.RequestID)
		if err != nil || len(h) != 2 || h[0].To != StatusOpen || h[1].To != StatusCancelled || h[1].Actor != actor(clerk).String() {
			t.Fatalf("history %+v %v", h, err)
		}
		if got := w.ann.statuses(r.RequestID); fmt.Sprint(got) != "[open cancelled]" {
			t.Fatalf("announced %v", got)
		}
		w.balanced()
	})
}

func TestConcurrentCreatesWithOneKey(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		var wg sync.WaitGroup
		ids := make([]string, 6)
		errs := make([]error, 6)
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, _, err := w.s.CreateRequest(context.Background(), actor(clerk), orgAmt, "same-key", fee())
				if err == nil {
					ids[i] = r.RequestID
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		for i := range ids {
			if errs[i] != nil || ids[i] != ids[0] {
				t.Fatalf("attempt %d: %q %v (first %q)", i, ids[i], errs[i], ids[0])
			}
		}
		if s := w.snapshot(); s.requests != 1 {
			t.Fatalf("%d requests", s.requests)
		}
		w.balanced()
	})
}

func TestBadCreatesChangeNothing(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		before := w.snapshot()
		for name, c := range map[string]struct {
			actor Actor
			org   string
			key   string
			mut   func(*CreateParams)
			want  error
		}{
			"negative amount":  {actor(clerk), orgAmt, "k", func(p *CreateParams) { p.AmountCents = -100 }, ErrInvalid},
			"zero amount":      {actor(clerk), orgAmt, "k", func(p *CreateParams) { p.AmountCents = 0 }, ErrInvalid},
			"huge amount":      {actor(clerk), orgAmt, "k", func(p *CreateParams) { p.AmountCents = MaxAmountCents + 1 }, ErrInvalid},
			"IBAN checksum":    {actor(clerk), orgAmt, "k", func(p *CreateParams) { p.IBAN = "DE88370400440532013000" }, ErrInvalid},
			"bad reference":    {actor(clerk), orgAmt, "k", func(p *CreateParams) { p.Reference = "RF19539007547034" }, ErrInvalid},
			"dollars":          {actor(clerk), orgAmt, "k", func(p *CreateParams) { p.Currency = "USD" }, ErrInvalid},
			"past due date":    {actor(clerk), orgAmt, "k", func(p *CreateParams) { p.DueDate = "2026-05-01" }, ErrInvalid},
			"bad due date":     {actor(clerk), orgAmt, "k", func(p *CreateParams) { p.DueDate = "04.05.2026" }, ErrInvalid},
			"long creditor":    {actor(clerk), orgAmt, "k", func(p *CreateParams) { p.Creditor = strings.Repeat("x", 71) }, ErrInvalid},
			"newline purpose":  {actor(clerk), orgAmt, "k", func(p *CreateParams) { p.Purpose = "a\nb" }, ErrInvalid},
			"no payer":         {actor(clerk), orgAmt, "k", func(p *CreateParams) { p.PayerAccount = "" }, ErrInvalid},
			"unknown contract": {actor(clerk), orgAmt, "k", func(p *CreateParams) { p.ContractID = strings.Repeat("a", 64) }, ErrNotFound},
			"no key":           {actor(clerk), orgAmt, "", func(p *CreateParams) {}, ErrInvalid},
			"key with space":   {actor(clerk), orgAmt, "a b", func(p *CreateParams) {}, ErrInvalid},
			"not a member":     {actor(stranger), orgAmt, "k", func(p *CreateParams) {}, ErrForbidden},
			"member elsewhere": {actor(seller), orgAmt, "k", func(p *CreateParams) {}, ErrForbidden},
			"level low":        {Actor{AccountID: clerk, DeviceID: "d", Level: ca.LevelLow}, orgAmt, "k", func(p *CreateParams) {}, ErrLevel},
			"operator not org": {Actor{Operator: true}, orgAmt, "k", func(p *CreateParams) {}, ErrLevel},
		} {
			p := fee()
			c.mut(&p)
			if _, _, err := w.s.CreateRequest(ctx, c.actor, c.org, c.key, p); !errors.Is(err, c.want) {
				t.Errorf("%s: %v, want %v", name, err, c.want)
			}
		}
		w.unchanged(before, "bad creates")
	})
}

// pay creates a fee and starts a PSP checkout for it.
func (w *world) pay(t *testing.T, key string) (*Request, string) {
	t.Helper()
	r, _, err := w.s.CreateRequest(context.Background(), actor(clerk), orgAmt, key, fee())
	if err != nil {
		t.Fatal(err)
	}
	in, err := w.s.Checkout(context.Background(), actor(citizen), r.RequestID)
	if err != nil || in.Provider != "psp" || in.PaymentID == "" {
		t.Fatalf("checkout %+v %v", in, err)
	}
	return r, in.PaymentID
}

func TestWebhookMovesMoneyOnceUnderConcurrency(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		r, pay := w.pay(t, "k1")
		hdr, body := webhook(t, w.now, WebhookEvent{ID: "evt_1", Type: "payment.succeeded", PaymentID: pay, RequestID: r.RequestID,
			AmountCents: 3700, FeeCents: 25, Currency: "EUR"})
		// The provider delivers the same event eight times at once, then
		// once more later.
		var wg sync.WaitGroup
		var mu sync.Mutex
		applied, dups := 0, 0
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, dup, err := w.s.HandleWebhook(ctx, "psp", hdr, body)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					t.Errorf("delivery: %v", err)
				case dup:
					dups++
				case got != nil && got.Status == StatusPaid:
					applied++
				}
			}()
		}
		wg.Wait()
		if applied != 1 || dups != 7 {
			t.Fatalf("applied %d, duplicates %d", applied, dups)
		}
		before := w.snapshot()
		if _, dup, err := w.s.HandleWebhook(ctx, "psp", hdr, body); err != nil || !dup {
			t.Fatalf("late duplicate: %v %v", dup, err)
		}
		w.unchanged(before, "a duplicate webhook")
		// Another event for the same, already paid request moves nothing.
		hdr2, body2 := webhook(t, w.now, WebhookEvent{ID: "evt_2", Type: "payment.succeeded", PaymentID: pay, RequestID: r.RequestID,
			AmountCents: 3700, Currency: "EUR"})
		if _, _, err := w.s.HandleWebhook(ctx, "psp", hdr2, body2); !errors.Is(err, ErrState) {
			t.Fatalf("second payment: %v", err)
		}
		w.unchanged(before, "a second payment event")

		if got, _ := w.s.Balance(ctx, orgAmt, AccClearing); got != 3700-25 {
			t.Fatalf("clearing %d", got)
		}
		if got, _ := w.s.Balance(ctx, orgAmt, AccReceivable); got != 0 {
			t.Fatalf("receivable %d", got)
		}
		if got, _ := w.s.Balance(ctx, orgAmt, AccPSPFees); got != 25 {
			t.Fatalf("fees %d", got)
		}
		if got := w.ann.statuses(r.RequestID); fmt.Sprint(got) != "[open paid]" {
			t.Fatalf("announced %v", got)
		}
		w.balanced()
	})
}

func TestBadWebhooksChangeNothing(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		r, pay := w.pay(t, "k1")
		ev := WebhookEvent{ID: "evt_1", Type: "payment.succeeded", PaymentID: pay, RequestID: r.RequestID, AmountCents: 3700, Currency: "EUR"}
		good, body := webhook(t, w.now, ev)
		before := w.snapshot()
		old, oldBody := webhook(t, w.now.Add(-WebhookTolerance-time.Second), ev)
		future, futureBody := webhook(t, w.now.Add(WebhookTolerance+time.Second), ev)
		wrongAmount := ev
		wrongAmount.AmountCents = 370
		wa, waBody := webhook(t, w.now, wrongAmount)
		neg := ev
		neg.AmountCents = -3700
		na, naBody := webhook(t, w.now, neg)
		unknown := ev
		unknown.RequestID = "pr_nope"
		un, unBody := webhook(t, w.now, unknown)
		for name, c := range map[string]struct {
			hdr  string
			body []byte
			want error
		}{
			"bad signature":    {strings.Replace(good, "v1=", "v1=00", 1), body, ErrWebhook},
			"other secret":     {SignWebhook([]byte("whsec_another_secret_of_32_bytes_x"), w.now, body), body, ErrWebhook},
			"altered body":     {good, []byte(strings.Replace(string(body), "3700", "3701", 1)), ErrWebhook},
			"old timestamp":    {old, oldBody, ErrWebhook},
			"future timestamp": {future, futureBody, ErrWebhook},
			"no header":        {"", body, ErrWebhook},
			"garbage header":   {"t=abc,v1=zz", body, ErrWebhook},
			"wrong amount":     {wa, waBody, ErrWebhook},
			"negative amount":  {na, naBody, ErrWebhook},
			"unknown request":  {un, unBody, ErrNotFound},
			"too large":        {good, make([]byte, MaxWebhookBody+1), ErrWebhook},
		} {
			if _, _, err := w.s.HandleWebhook(ctx, "psp", c.hdr, c.body); !errors.Is(err, c.want) {
				t.Errorf("%s: %v, want %v", name, err, c.want)
			}
		}
		if _, _, err := w.s.HandleWebhook(ctx, "other-psp", good, body); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown provider: %v", err)
		}
		w.unchanged(before, "bad webhooks")
		// The good one still works afterwards: refusals stored no event id.
		if got, _, err := w.s.HandleWebhook(ctx, "psp", good, body); err != nil || got.Status != StatusPaid {
			t.Fatalf("good webhook: %v", err)
		}
	})
}

func TestRefunds(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		r, pay := w.pay(t, "k1")
		owner := actor("acc-amtsleiter")
		if _, _, err := w.s.Refund(ctx, owner, r.RequestID, "rf-0", 100); !errors.Is(err, ErrState) {
			t.Fatalf("refund of an open request: %v", err)
		}
		hdr, body := webhook(t, w.now, WebhookEvent{ID: "evt_1", Type: "payment.succeeded", PaymentID: pay, RequestID: r.RequestID, AmountCents: 3700, Currency: "EUR"})
		if _, _, err := w.s.HandleWebhook(ctx, "psp", hdr, body); err != nil {
			t.Fatal(err)
		}
		before := w.snapshot()
		if _, _, err := w.s.Refund(ctx, actor(clerk), r.RequestID, "rf-1", 1000); !errors.Is(err, ErrForbidden) {
			t.Fatalf("agent refunds: %v", err)
		}
		if _, _, err := w.s.Refund(ctx, owner, r.RequestID, "rf-1", 3701); !errors.Is(err, ErrInvalid) {
			t.Fatalf("over-refund: %v", err)
		}
		if _, _, err := w.s.Refund(ctx, owner, r.RequestID, "rf-1", -5); !errors.Is(err, ErrInvalid) {
			t.Fatalf("negative refund: %v", err)
		}
		w.unchanged(before, "refused refunds")
		res, _, err := w.s.Refund(ctx, owner, r.RequestID, "rf-1", 1000)
		if err != nil || res.Status != StatusRefunded || res.RefundedCents != 1000 {
			t.Fatalf("partial refund %+v %v", res, err)
		}
		// A retry is answered from the first result; the provider is not
		// asked again and nothing is booked twice.
		before = w.snapshot()
		again, replay, err := w.s.Refund(ctx, owner, r.RequestID, "rf-1", 1000)
		if err != nil || !replay || *again != *res || w.psp.refunds.Load() != 1 {
			t.Fatalf("retry %+v %v %v, provider refunds %d", again, replay, err, w.psp.refunds.Load())
		}
		if _, _, err := w.s.Refund(ctx, owner, r.RequestID, "rf-1", 999); !errors.Is(err, ErrIdempotency) {
			t.Fatalf("key reuse: %v", err)
		}
		w.unchanged(before, "a retried refund")
		if res, _, err = w.s.Refund(ctx, owner, r.RequestID, "rf-2", 2700); err != nil || res.RefundedCents != 3700 {
			t.Fatalf("rest %+v %v", res, err)
		}
		if _, _, err := w.s.Refund(ctx, owner, r.RequestID, "rf-3", 1); !errors.Is(err, ErrInvalid) {
			t.Fatalf("beyond full: %v", err)
		}
		if got, _ := w.s.Balance(ctx, orgAmt, AccRefunds); got != 3700 {
			t.Fatalf("refunds %d", got)
		}
		if got, _ := w.s.Balance(ctx, orgAmt, AccClearing); got != 0 {
			t.Fatalf("clearing %d", got)
		}
		entries, err := w.s.Audit(ctx, owner, orgAmt, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		var actions []string
		for _, e := range entries {
			actions = append(actions, e.Action)
		}
		if fmt.Sprint(actions) != "[request.create request.paid request.refund request.refund]" {
			t.Fatalf("audit %v", actions)
		}
		if _, err := w.s.Audit(ctx, actor(clerk), orgAmt, 0, 0); !errors.Is(err, ErrForbidden) {
			t.Fatalf("agent reads audit: %v", err)
		}
		w.balanced()
	})
}

func TestBankStatementReconciliation(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		p := fee()
		p.Reference = "RF18 5390 0754 7034" // the reference on the sample statement
		r, _, err := w.s.CreateRequest(ctx, actor(clerk), orgAmt, "k1", p)
		if err != nil {
			t.Fatal(err)
		}
		xml, err := os.ReadFile("testdata/camt053.xml")
		if err != nil {
			t.Fatal(err)
		}
		op := Actor{Operator: true}
		if _, err := w.s.ImportStatement(ctx, actor(clerk), xml); !errors.Is(err, ErrForbidden) {
			t.Fatalf("non-operator import: %v", err)
		}
		res, err := w.s.ImportStatement(ctx, op, xml)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Matched) != 1 || res.Matched[0].RequestID != r.RequestID || len(res.Unmatched) != 2 || res.Skipped != 1 {
			t.Fatalf("import %+v", res)
		}
		// The second entry names the same reference: that request is paid
		// by the first one by then.
		if res.Unmatched[0].Note != "request "+r.RequestID+" is paid" || res.Unmatched[1].Note != "no RF creditor reference" {
			t.Fatalf("notes %q %q", res.Unmatched[0].Note, res.Unmatched[1].Note)
		}
		got, _ := w.s.Request(ctx, actor(citizen), r.RequestID)
		if got.Status != StatusPaid || got.Provider != ProviderBank {
			t.Fatalf("request %+v", got)
		}
		if b, _ := w.s.Balance(ctx, orgAmt, AccBank); b != 3700+370 {
			t.Fatalf("bank %d", b)
		}
		if b, _ := w.s.Balance(ctx, "", AccUnmatched); b != -11000 {
			t.Fatalf("unallocated (no organisation) %d", b)
		}
		w.balanced()

		// Imported again: nothing is booked twice.
		before := w.snapshot()
		again, err := w.s.ImportStatement(ctx, op, xml)
		if err != nil || again.Duplicates != 3 || len(again.Matched)+len(again.Unmatched) != 0 {
			t.Fatalf("re-import %+v %v", again, err)
		}
		// The re-import is audited; nothing else changes.
		before.audit++
		w.unchanged(before, "a re-import")

		// Malformed and huge statements are refused whole.
		before = w.snapshot()
		for name, doc := range map[string][]byte{
			"malformed": []byte(strings.Replace(string(xml), "</Ntry>", "", 1)),
			"huge":      append(append([]byte{}, xml...), make([]byte, 9<<20)...),
			"negative":  []byte(strings.Replace(string(xml), ">110.00<", ">-110.00<", 1)),
		} {
			if _, err := w.s.ImportStatement(ctx, op, doc); !errors.Is(err, ErrStatement) {
				t.Errorf("%s: %v", name, err)
			}
		}
		w.unchanged(before, "bad statements")

		// The unmatched entries stay listed until resolved.
		list, err := w.s.BankEntries(ctx, op, EntryUnmatched)
		if err != nil || len(list) != 2 {
			t.Fatalf("unmatched %+v %v", list, err)
		}
		second, _, err := w.s.CreateRequest(ctx, actor(clerk), orgAmt, "k2", CreateParams{PayerAccount: "acc-hans", AmountCents: 11000,
			Creditor: "Stadtkasse Musterstadt", IBAN: testIBAN, Purpose: "Hundesteuer 2026", DueDate: "2026-06-01"})
		if err != nil {
			t.Fatal(err)
		}
		var dog, short BankEntry
		for _, e := range list {
			if e.AmountCents == 11000 {
				dog = e
			} else {
				short = e
			}
		}
		if _, err := w.s.Resolve(ctx, op, dog.ID, r.RequestID, ""); !errors.Is(err, ErrState) {
			t.Fatalf("resolve to a paid request: %v", err)
		}
		if e, err := w.s.Resolve(ctx, op, dog.ID, second.RequestID, ""); err != nil || e.Status != EntryResolved {
			t.Fatalf("resolve: %+v %v", e, err)
		}
		if _, err := w.s.Resolve(ctx, op, short.ID, "", "zurücküberwiesen am 15.05."); err != nil {
			t.Fatal(err)
		}
		if list, _ := w.s.BankEntries(ctx, op, EntryUnmatched); len(list) != 0 {
			t.Fatalf("still unmatched: %+v", list)
		}
		if got, _ := w.s.Request(ctx, op, second.RequestID); got.Status != StatusPaid {
			t.Fatalf("second %+v", got)
		}
		if b, _ := w.s.Balance(ctx, orgAmt, AccBank); b != 3700 {
			t.Fatalf("bank after the return %d", b)
		}
		w.balanced()
	})
}

func TestContracts(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		contract := w.contract("offer-1", ca.LevelSubstantial)
		buyer := actor(citizen)
		before := w.snapshot()
		low := buyer
		low.Level = ca.LevelLow
		if _, _, err := w.s.RegisterContract(ctx, low, "c1", contract); !errors.Is(err, ErrLevel) {
			t.Fatalf("level low: %v", err)
		}
		b := []byte(contract)
		b[len(b)/2] ^= 0x01
		if _, _, err := w.s.RegisterContract(ctx, buyer, "c1", string(b)); !errors.Is(err, ErrContract) {
			t.Fatalf("altered: %v", err)
		}
		if _, _, err := w.s.RegisterContract(ctx, actor(stranger), "c1", contract); !errors.Is(err, ErrForbidden) {
			t.Fatalf("stranger: %v", err)
		}
		w.unchanged(before, "refused contracts")
		info, _, err := w.s.RegisterContract(ctx, buyer, "c1", contract)
		if err != nil || info.TotalCents != 5000 || info.OrgID != orgShop || info.BuyerAccount != citizen {
			t.Fatalf("register %+v %v", info, err)
		}
		// The seller registering the same contract gets the same record.
		if again, _, err := w.s.RegisterContract(ctx, actor(seller), "s1", contract); err != nil || again.ContractID != info.ContractID {
			t.Fatalf("seller: %+v %v", again, err)
		}
		p := CreateParams{ContractID: info.ContractID, Creditor: "Bäckerei Korn", IBAN: testIBAN, Purpose: "Auftrag offer-1",
			DueDate: "2026-05-10"}
		if _, _, err := w.s.CreateRequest(ctx, actor(seller), orgAmt, "r1", p); !errors.Is(err, ErrForbidden) {
			t.Fatalf("request for another org: %v", err)
		}
		p.AmountCents = 4999
		if _, _, err := w.s.CreateRequest(ctx, actor(seller), orgShop, "r1", p); !errors.Is(err, ErrInvalid) {
			t.Fatalf("amount differs: %v", err)
		}
		p.AmountCents = 0
		r, _, err := w.s.CreateRequest(ctx, actor(seller), orgShop, "r1", p)
		if err != nil || r.AmountCents != 5000 || r.PayerAccount != citizen {
			t.Fatalf("request %+v %v", r, err)
		}
		if got, _ := w.s.Balance(ctx, orgShop, AccSales); got != -5000 {
			t.Fatalf("sales %d", got)
		}
		if _, err := w.s.Contract(ctx, actor(stranger), info.ContractID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("stranger reads contract: %v", err)
		}
		w.balanced()
	})
}

// TestRegisterOffer: only the signing device, with a substantial
// session, registers an offer, only while its seller is a current member
// and only with an issued_at near the server's clock; a contract needs a
// registered offer.
func TestRegisterOffer(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		// A contract on an unregistered offer is refused.
		contract := w.contract("of-contract", ca.LevelSubstantial)
		if _, err := w.d.Exec(ctx, `DELETE FROM payments_offers`); err != nil {
			t.Fatal(err)
		}
		if _, _, err := w.s.RegisterContract(ctx, actor(citizen), "c1", contract); !errors.Is(err, ErrContract) {
			t.Fatalf("contract on an unregistered offer: %v", err)
		}
		before := w.snapshot()
		low := actor(seller)
		low.Level = ca.LevelLow
		skewed, _ := w.offer("of-skew", w.now.Add(-MaxClockSkew-time.Second))
		ahead, _ := w.offer("of-ahead", w.now.Add(MaxClockSkew+time.Second))
		good, _ := w.offer("of-good", w.now)
		for _, c := range []struct {
			name  string
			actor Actor
			offer string
			want  error
		}{
			{"level low", low, good, ErrLevel},
			{"another device", actor(citizen), good, ErrForbidden},
			{"issued too early", actor(seller), skewed, ErrInvalid},
			{"issued ahead", actor(seller), ahead, ErrInvalid},
			{"not a JWS", actor(seller), "a.b.c", ErrInvalid},
		} {
			if _, _, err := w.s.RegisterOffer(ctx, c.actor, c.offer); !errors.Is(err, c.want) {
				t.Errorf("%s: %v, want %v", c.name, err, c.want)
			}
		}
		// A seller who is no longer a member.
		delete(w.roles, orgShop+"/"+seller)
		if _, _, err := w.s.RegisterOffer(ctx, actor(seller), good); !errors.Is(err, ErrForbidden) {
			t.Fatalf("former member: %v", err)
		}
		w.unchanged(before, "refused offers")
		w.roles[orgShop+"/"+seller] = "seller"
		info, replay, err := w.s.RegisterOffer(ctx, actor(seller), good)
		if err != nil || replay || info.OfferID != "of-good" || info.SellerAccount != seller {
			t.Fatalf("register %+v %v %v", info, replay, err)
		}
		if again, replay, err := w.s.RegisterOffer(ctx, actor(seller), good); err != nil || !replay || again.ID != info.ID {
			t.Fatalf("again %+v %v %v", again, replay, err)
		}
	})
}

func TestRevokedSellerContractRefused(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		contract := w.contract("offer-1", ca.LevelSubstantial)
		// The seller's device is revoked a moment before the buyer signed:
		// kanald's current list says so.
		c, err := parseForTest(contract, w)
		if err != nil {
			t.Fatal(err)
		}
		w.revoked[c.String()] = true
		before := w.snapshot()
		if _, _, err := w.s.RegisterContract(context.Background(), actor(citizen), "c1", contract); !errors.Is(err, ErrContract) {
			t.Fatalf("revoked seller: %v", err)
		}
		w.unchanged(before, "a revoked seller's contract")
		// Revoked after signing: the contract verifies offline, but kanald
		// registers nothing from a device that is revoked now.
		w.now = w.now.Add(time.Minute)
		if _, _, err := w.s.RegisterContract(context.Background(), actor(citizen), "c1", contract); !errors.Is(err, ErrContract) {
			t.Fatalf("seller revoked since: %v", err)
		}
		w.unchanged(before, "a contract from a device revoked since")
	})
}

func TestExpiry(t *testing.T) {
	run(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		p := fee()
		p.DueDate = t0.Format(time.DateOnly)
		r, _, err := w.s.CreateRequest(ctx, actor(clerk), orgAmt, "k1", p)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := w.s.ExpireDue(ctx); err != nil || n != 0 {
			t.Fatalf("due today: %d %v", n, err)
		}
		w.now = t0.Add(24 * time.Hour)
		if n, err := w.s.ExpireDue(ctx); err != nil || n != 1 {
			t.Fatalf("expire: %d %v", n, err)
		}
		if got, _ := w.s.Request(ctx, actor(citizen), r.RequestID); got.Status != StatusExpired {
			t.Fatalf("status %s", got.Status)
		}
		if n, _ := w.s.ExpireDue(ctx); n != 0 {
			t.Fatalf("expired twice")
		}
		w.balanced()
	})
}
