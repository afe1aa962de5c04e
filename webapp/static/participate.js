// kanal web app: taking part — a survey's ballot, an offer to countersign,
// a payment request with its EPC QR code. Every check, signature and
// ballot runs in kanal.wasm (the Go SDK: kanalGo.survey, vote, offer,
// acceptOffer, payment); this file renders what it returns.
"use strict";

Object.assign(T.de, {
  openSurvey: "Umfrage öffnen", openOffer: "Angebot ansehen", openPayment: "Zahlungsaufforderung ansehen",
  surveyInvite: "Einladung zur Umfrage „{0}“", offerMsg: "Angebot von {0}", paymentMsg: "Zahlungsaufforderung über {0}",
  surveyTitle: "Umfrage: {0}", anonymous: "Anonym: Ihre Stimme wird ohne Ihre Anmeldung abgegeben.",
  named: "Namentlich: die Behörde sieht, wer wie abgestimmt hat.", closesAt: "Offen bis {0}", optional: "(optional)",
  chooseBetween: "Wählen Sie {0} bis {1}.", scaleHint: "1 = trifft gar nicht zu, 5 = trifft voll zu",
  rankHint: "Vergeben Sie jedem Punkt einen eigenen Rang (1 = am liebsten).", rankOf: "Rang für „{0}“",
  yourAnswer: "Ihre Antwort", castBallot: "Stimme abgeben", casting: "Die Stimme wird verschlüsselt und abgegeben …",
  receiptTitle: "Ihre Quittung", receiptSeq: "Eintrag auf der Tafel", receiptHash: "Prüfsumme des Stimmzettels",
  receiptAt: "Gezählt am", receiptOK: "Geprüft: die Quittung ist vom Notar der Plattform signiert, und Ihr Stimmzettel steht auf der öffentlichen Tafel.",
  receiptNotOK: "Die Quittung konnte gerade nicht gegen die Tafel geprüft werden.", voted: "Ihre Stimme ist abgegeben.",
  surveyClosed: "Diese Umfrage nimmt keine Stimmen an.",
  offerTitle: "Angebot von {0}", items: "Positionen", description: "Beschreibung", quantity: "Menge", unitPrice: "Einzelpreis",
  vat: "MwSt.", lineTotal: "Summe", total: "Gesamt (brutto)", vatIncluded: "darin enthaltene MwSt.", validUntil: "Gültig bis {0}",
  terms: "Bedingungen: {0}", offerOpen: "Offen: noch nicht unterschrieben.", offerExpired: "Abgelaufen: es kann nicht mehr angenommen werden.",
  offerSigned: "Unterschrieben: Vertrag {0}, von kanal registriert am {1}.", accept: "Angebot annehmen …",
  confirmTitle: "Verbindlich unterschreiben?", confirmText: "Sie unterschreiben mit dem Schlüssel dieses Geräts einen Vertrag mit {0} über {1}. Diese Unterschrift ist bindend.",
  signAmount: "{0} verbindlich unterschreiben", cancel: "Abbrechen", accountPassword: "Kontopasswort (mindestens 12 Zeichen)",
  accountPasswordHint: "Eine verbindliche Unterschrift braucht Ihr Gerät und Ihr Kontopasswort. Hat Ihr Konto noch keins, wird dieses sein Passwort.", signing: "Der Vertrag wird unterschrieben …",
  signedStatus: "Vertrag unterschrieben und an {0} gesendet.",
  paymentTitle: "Zahlungsaufforderung von {0}", amount: "Betrag", payee: "Empfänger", iban: "IBAN", bic: "BIC",
  reference: "Referenz", purpose: "Verwendungszweck", due: "Fällig am", payStatus: "Status",
  st_open: "offen", st_paid: "bezahlt", st_cancelled: "storniert", st_expired: "abgelaufen", st_refunded: "erstattet",
  qrAlt: "EPC-QR-Code (GiroCode) für eine Überweisung von {0} an {1}, IBAN {2}, Referenz {3}",
  qrCaption: "Scannen Sie den Code mit Ihrer Banking-App, oder überweisen Sie mit den Angaben oben.",
  noQR: "Diese Zahlungsaufforderung ist nicht offen; es gibt keinen Code zu bezahlen.",
});
Object.assign(T.en, {
  openSurvey: "Open the survey", openOffer: "View the offer", openPayment: "View the payment request",
  surveyInvite: "Invitation to the survey “{0}”", offerMsg: "Offer from {0}", paymentMsg: "Payment request for {0}",
  surveyTitle: "Survey: {0}", anonymous: "Anonymous: your vote is cast without your sign-in.",
  named: "Named: the office sees who voted how.", closesAt: "Open until {0}", optional: "(optional)",
  chooseBetween: "Choose {0} to {1}.", scaleHint: "1 = not at all, 5 = fully",
  rankHint: "Give every item a rank of its own (1 = most preferred).", rankOf: "Rank for “{0}”",
  yourAnswer: "Your answer", castBallot: "Cast my vote", casting: "Encrypting and casting the vote …",
  receiptTitle: "Your receipt", receiptSeq: "Entry on the board", receiptHash: "Hash of the ballot",
  receiptAt: "Counted at", receiptOK: "Checked: the receipt is signed by the platform's notary, and your ballot is on the public board.",
  receiptNotOK: "The receipt could not be checked against the board just now.", voted: "Your vote is cast.",
  surveyClosed: "This survey takes no votes.",
  offerTitle: "Offer from {0}", items: "Items", description: "Description", quantity: "Quantity", unitPrice: "Unit price",
  vat: "VAT", lineTotal: "Amount", total: "Total (gross)", vatIncluded: "VAT included", validUntil: "Valid until {0}",
  terms: "Terms: {0}", offerOpen: "Open: not signed yet.", offerExpired: "Expired: it can no longer be accepted.",
  offerSigned: "Signed: contract {0}, registered by kanal at {1}.", accept: "Accept the offer …",
  confirmTitle: "Sign bindingly?", confirmText: "With this device's key you sign a contract with {0} over {1}. This signature is binding.",
  signAmount: "Sign {0} bindingly", cancel: "Cancel", accountPassword: "Account password (at least 12 characters)",
  accountPasswordHint: "A binding signature needs your device and your account password. If your account has none yet, this becomes its password.", signing: "Signing the contract …",
  signedStatus: "Contract signed and sent to {0}.",
  paymentTitle: "Payment request from {0}", amount: "Amount", payee: "Payee", iban: "IBAN", bic: "BIC",
  reference: "Reference", purpose: "Purpose", due: "Due", payStatus: "Status",
  st_open: "open", st_paid: "paid", st_cancelled: "cancelled", st_expired: "expired", st_refunded: "refunded",
  qrAlt: "EPC QR code (GiroCode) for a transfer of {0} to {1}, IBAN {2}, reference {3}",
  qrCaption: "Scan the code with your banking app, or transfer with the details above.",
  noQR: "This payment request is not open; there is no code to pay.",
});

const participate = (() => {
  const kinds = {
    "survey.invite": { button: "openSurvey", load: (id) => kanalGo.survey(id), render: renderSurvey },
    "offer": { button: "openOffer", load: (id) => kanalGo.offer(id), render: renderOffer },
    "payment.request": { button: "openPayment", load: (id) => kanalGo.payment(id), render: renderPayment },
  };
  let current = null; // {entry, view}

  const el = (tag, props, ...children) => {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "text") n.textContent = v;
      else if (k in n && typeof v !== "string") n[k] = v;
      else n.setAttribute(k, v);
    }
    n.append(...children.filter((c) => c !== null && c !== undefined));
    return n;
  };
  const money = (cents, cur) => new Intl.NumberFormat(lang, { style: "currency", currency: cur || "EUR" }).format(cents / 100);
  const when = (iso) => new Date(iso).toLocaleString(lang, { dateStyle: "medium", timeStyle: "short" });
  const day = (ymd) => new Date(ymd + "T12:00:00Z").toLocaleDateString(lang, { dateStyle: "medium" });

  // The panel below the conversation where an item opens.
  function panel() {
    let sec = $("detail");
    if (!sec) {
      sec = el("section", { id: "detail", "aria-labelledby": "h-detail" });
      $("conv").append(sec);
    }
    return sec;
  }

  // decorate adds to a message in the conversation what it is and the
  // button that opens it.
  function decorate(li, e) {
    const k = kinds[e.kind];
    if (!k || !e.body || e.from === "me") return;
    const b = e.body;
    const text = li.querySelector(".text");
    if (e.kind === "survey.invite") text.textContent = t("surveyInvite", b.title);
    if (e.kind === "offer") text.textContent = t("offerMsg", e.org || e.name || e.from);
    if (e.kind === "payment.request") text.textContent = t("paymentMsg", money(b.amount_cents, b.currency));
    const btn = el("button", { type: "button", class: "open-item", text: t(k.button) });
    btn.dataset.item = e.id;
    btn.addEventListener("click", () => open(e));
    li.append(btn);
  }

  async function open(e) {
    const k = kinds[e.kind];
    status(t("working"));
    try {
      const view = JSON.parse(await k.load(e.id));
      current = { entry: e, view };
      render();
      status("");
      $("h-detail").focus();
    } catch (err) {
      status(t("error", err.message || String(err)), true);
    }
  }

  // render draws the open item again: after it changed, or in the other
  // language.
  function render() {
    if (!current) return;
    if (!state.current || convKey(state.current) !== convKey(current.entry.peer)) { close(); return; }
    const sec = panel();
    sec.replaceChildren(...kinds[current.entry.kind].render(current.view, current.entry));
  }

  function heading(text) { return el("h2", { id: "h-detail", tabindex: "-1", text }); }

  function defs(rows) {
    const dl = el("dl", { class: "facts" });
    for (const [k, v, cls] of rows) {
      if (v === undefined || v === null || v === "") continue;
      dl.append(el("dt", { text: t(k) }), el("dd", { text: v, class: cls || "" }));
    }
    return dl;
  }

  // ---- survey ----
  function renderSurvey(v, e) {
    const out = [heading(t("surveyTitle", v.title))];
    if (v.description) out.push(el("p", { text: v.description }));
    out.push(el("p", { class: "hint", text: (v.mode === "named" ? t("named") : t("anonymous")) + " " + t("closesAt", when(v.closes_at)) }));
    if (v.receipt) {
      out.push(receipt(v.receipt));
      return out;
    }
    if (!v.answerable) {
      out.push(el("p", { text: t("surveyClosed") }));
      return out;
    }
    const form = el("form", { id: "form-ballot" });
    v.questions.forEach((q, i) => form.append(question(q, i)));
    form.append(el("button", { type: "submit", text: t("castBallot") }));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      busy(form, async () => {
        status(t("casting"));
        const rec = JSON.parse(await kanalGo.vote(e.id, JSON.stringify(v.questions.map((q, i) => answer(form, q, i)))));
        current.view = Object.assign({}, v, { receipt: rec, answerable: false });
        render();
        status(t("voted"));
        $("h-receipt").focus();
      });
    });
    out.push(form);
    return out;
  }

  function question(q, i) {
    const name = "q" + i;
    const legend = el("legend", { text: (i + 1) + ". " + q.prompt + (q.optional ? " " + t("optional") : "") });
    const fs = el("fieldset", { class: "question" }, legend);
    const choice = (type, value, label, idx) => {
      const id = name + "-" + idx;
      return el("div", { class: "choice" },
        el("input", { type, id, name, value: String(value), required: type === "radio" && !q.optional }),
        el("label", { for: id, text: label }));
    };
    switch (q.kind) {
      case "single":
        q.options.forEach((o, j) => fs.append(choice("radio", j, o, j)));
        break;
      case "multiple": {
        const hint = el("p", { class: "hint", id: name + "-hint", text: t("chooseBetween", q.min || 1, q.max || q.options.length) });
        fs.setAttribute("aria-describedby", hint.id);
        fs.append(hint);
        q.options.forEach((o, j) => fs.append(choice("checkbox", j, o, j)));
        break;
      }
      case "scale": {
        const hint = el("p", { class: "hint", id: name + "-hint", text: t("scaleHint") });
        fs.setAttribute("aria-describedby", hint.id);
        fs.append(hint);
        for (let s = 1; s <= 5; s++) fs.append(choice("radio", s, String(s), s));
        break;
      }
      case "ranking": {
        const hint = el("p", { class: "hint", id: name + "-hint", text: t("rankHint") });
        fs.setAttribute("aria-describedby", hint.id);
        fs.append(hint);
        q.options.forEach((o, j) => {
          const id = name + "-" + j;
          const sel = el("select", { id, name: id, required: !q.optional });
          sel.append(el("option", { value: "", text: "–" }));
          q.options.forEach((_, r) => sel.append(el("option", { value: String(r + 1), text: String(r + 1) })));
          fs.append(el("label", { for: id, text: t("rankOf", o) }), sel);
        });
        break;
      }
      case "text": {
        const id = name + "-text";
        fs.append(el("label", { for: id, text: t("yourAnswer") }),
          el("textarea", { id, name: id, rows: "3", maxlength: String(q.max || 1000), required: !q.optional }));
        break;
      }
    }
    return fs;
  }

  // answer reads one question's answer in the form kanal survey vote
  // takes: an option number, a list of them, a scale value, a text, or
  // null for an optional question left out. kanal.wasm checks it.
  function answer(form, q, i) {
    const name = "q" + i;
    switch (q.kind) {
      case "single":
      case "scale": {
        const c = form.querySelector(`input[name="${name}"]:checked`);
        return c ? Number(c.value) : null;
      }
      case "multiple": {
        const cs = [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((c) => Number(c.value));
        return cs.length || !q.optional ? cs : null;
      }
      case "ranking": {
        const ranks = q.options.map((_, j) => Number(form.querySelector("#" + name + "-" + j).value));
        if (q.optional && ranks.every((r) => r === 0)) return null;
        return q.options.map((_, j) => j).sort((a, b) => ranks[a] - ranks[b]);
      }
      case "text": {
        const s = form.querySelector("#" + name + "-text").value;
        return s === "" && q.optional ? null : s;
      }
    }
    return null;
  }

  function receipt(r) {
    return el("div", { class: "receipt" },
      el("h3", { id: "h-receipt", tabindex: "-1", text: t("receiptTitle") }),
      defs([["receiptSeq", String(r.seq)], ["receiptHash", r.hash, "hash"], ["receiptAt", when(r.at)]]),
      el("p", { id: "receipt-check", text: r.verified ? t("receiptOK") : t("receiptNotOK") }));
  }

  // ---- offer ----
  function renderOffer(v, e) {
    const cur = v.currency;
    const table = el("table", { class: "items" },
      el("caption", { text: t("items") }),
      el("thead", {}, el("tr", {}, ...["description", "quantity", "unitPrice", "vat", "lineTotal"].map((k) => el("th", { scope: "col", text: t(k) })))));
    const body = el("tbody");
    for (const it of v.items) {
      body.append(el("tr", {},
        el("td", { text: it.description }), el("td", { text: String(it.quantity) }), el("td", { text: money(it.unit_cents, cur) }),
        el("td", { text: new Intl.NumberFormat(lang).format(it.vat_basis_points / 100) + " %" }),
        el("td", { text: money(it.quantity * it.unit_cents, cur) })));
    }
    table.append(body, el("tfoot", {},
      el("tr", {}, el("th", { scope: "row", colspan: "4", text: t("total") }), el("td", { id: "offer-total", text: money(v.total_cents, cur) })),
      el("tr", {}, el("th", { scope: "row", colspan: "4", text: t("vatIncluded") }), el("td", { text: money(v.vat_cents, cur) }))));
    const out = [heading(t("offerTitle", v.org_name)), table, el("p", { text: t("validUntil", when(v.valid_until)) })];
    if (v.terms) out.push(el("p", { text: t("terms", v.terms) }));
    let state = t("offerOpen");
    if (v.state === "expired") state = t("offerExpired");
    if (v.state === "signed") state = t("offerSigned", v.contract.contract_id, when(v.contract.registered_at));
    out.push(el("p", { id: "offer-state", class: "state", text: state }));
    if (v.state !== "open") return out;

    // Signing is binding: it takes a second, explicit step that names the
    // amount, in a modal dialog (Escape or Cancel closes it), with the
    // account password the substantial session needs.
    const amount = money(v.total_cents, cur);
    const pw = el("input", { type: "password", id: "offer-password", autocomplete: "current-password", minlength: "12",
      required: true, "aria-describedby": "offer-password-hint" });
    const cancel = el("button", { type: "button", id: "offer-cancel", class: "secondary", text: t("cancel") });
    const sign = el("button", { type: "button", id: "offer-sign", text: t("signAmount", amount) });
    const dialog = el("dialog", { id: "offer-confirm", "aria-labelledby": "h-confirm", "aria-describedby": "confirm-text" },
      el("h3", { id: "h-confirm", text: t("confirmTitle") }),
      el("p", { id: "confirm-text", text: t("confirmText", v.org_name, amount) }),
      el("label", { for: "offer-password", text: t("accountPassword") }), pw,
      el("p", { class: "hint", id: "offer-password-hint", text: t("accountPasswordHint") }),
      el("div", { class: "actions" }, cancel, sign));
    const accept = el("button", { type: "button", id: "offer-accept", text: t("accept") });
    accept.addEventListener("click", () => { pw.value = ""; dialog.showModal(); pw.focus(); });
    dialog.addEventListener("close", () => { pw.value = ""; if (current && current.view === v) accept.focus(); });
    cancel.addEventListener("click", () => dialog.close());
    sign.addEventListener("click", async () => {
      sign.disabled = cancel.disabled = true;
      status(t("signing"));
      try {
        const view = JSON.parse(await kanalGo.acceptOffer(e.id, String(v.total_cents), pw.value));
        dialog.close();
        current.view = view;
        render();
        status(t("signedStatus", v.org_name));
        $("offer-state").setAttribute("tabindex", "-1");
        $("offer-state").focus();
      } catch (err) {
        dialog.close();
        status(t("error", err.message || String(err)), true);
      } finally {
        sign.disabled = cancel.disabled = false;
      }
    });
    out.push(accept, dialog);
    return out;
  }

  // ---- payment request ----
  function renderPayment(v, e) {
    const amount = money(v.amount_cents, v.currency);
    const out = [heading(t("paymentTitle", e.org || v.creditor)),
      defs([["amount", amount], ["payee", v.creditor], ["iban", v.iban], ["bic", v.bic], ["purpose", v.purpose],
        ["reference", v.reference], ["due", day(v.due_date)],
        ["payStatus", t("st_" + v.status) + (v.status === "open" ? "" : " (" + t(v.status_signed ? "statusSigned" : "statusRecord") + ")"), "pay-status"]])];
    if (v.qr) {
      const px = 6; // whole pixels per module: scanners misread stretched modules
      out.push(el("figure", { class: "qr" },
        el("img", { id: "epc-qr", src: v.qr, width: String(v.modules * px), height: String(v.modules * px),
          alt: t("qrAlt", amount, v.creditor, v.iban, v.reference) }),
        el("figcaption", { text: t("qrCaption") })));
    } else {
      out.push(el("p", { text: t("noQR") }));
    }
    return out;
  }

  // A payment's new status, from a notice kanal.wasm verified (office.js
  // passes it on): the open request is loaded again, so its status shows
  // and its QR code goes, without a reload and without moving the focus.
  document.addEventListener("kanal:payment", async (ev) => {
    if (!current || current.entry.kind !== "payment.request" || current.view.request_id !== ev.detail.request_id) return;
    const focused = document.activeElement && document.activeElement.id === "h-detail";
    try {
      current.view = JSON.parse(await kinds["payment.request"].load(current.entry.id));
      render();
      if (focused) $("h-detail").focus();
    } catch (err) {
      status(t("error", err.message || String(err)), true);
    }
  });

  function close() {
    current = null;
    const s = $("detail");
    if (s) s.remove();
  }

  return { decorate, render, close };
})();
globalThis.participate = participate;
