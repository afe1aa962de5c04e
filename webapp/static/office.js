// kanal web app: the office agent's side of offers and payment requests,
// and payment status as it changes. Everything that checks, signs or
// sends runs in kanal.wasm (kanalGo.sendOffer, requestPayment, contract,
// sentPayment: the functions kanal offer send and kanal pay request use);
// this file renders forms and what the SDK returns.
"use strict";

Object.assign(T.de, {
  asOffice: "Als {0}", sendOfferTitle: "Angebot senden", sendPaymentTitle: "Zahlungsaufforderung senden",
  itemN: "Position {0}", itemDesc: "Beschreibung", itemQty: "Menge", itemPrice: "Einzelpreis brutto in Euro",
  itemVat: "MwSt.-Satz in Prozent", addItem: "Weitere Position", removeItem: "Position {0} entfernen",
  validDays: "Gültig für (Tage)", offerTerms: "Bedingungen (optional)", accountPw: "Kontopasswort",
  accountPwHint: "Eine Unterschrift für die Behörde braucht Ihr Gerät und Ihr Kontopasswort. Hat Ihr Konto noch keins, wird dieses sein Passwort.",
  signSend: "Angebot unterschreiben und senden", contractLink: "Vertrag", noContract: "Kein Vertrag (Gebühr)",
  contractOpt: "Vertrag {0} über {1}", contractOptShort: "Vertrag {0}",
  payAmount: "Betrag in Euro", payAmountHint: "Bei einem Vertrag kommt der Betrag aus dem Vertrag.",
  payCreditor: "Empfänger", payIban: "IBAN", payBic: "BIC (optional)", payPurpose: "Verwendungszweck",
  payReference: "RF-Referenz (optional, sonst erzeugt)", payDue: "Fällig am (JJJJ-MM-TT)", sendPayment: "Zahlungsaufforderung senden",
  formErrors: "Bitte korrigieren Sie: {0}", offerSent: "Angebot über {0} an {1} gesendet.", paymentSent: "Zahlungsaufforderung über {0} an {1} gesendet.",
  sentOffer: "Angebot gesendet", sentPayment: "Zahlungsaufforderung gesendet: {0}", viewStatus: "Status ansehen",
  contractMsg: "Vertrag unterschrieben von {0}", viewContract: "Vertrag ansehen",
  contractTitle: "Vertrag mit {0}", contractVerified: "Geprüft: unterschrieben von {0} am {1}, das Angebot von {2}; von kanal registriert am {3}.",
  contractState: "Stand", cs_signed: "unterschrieben, Zahlung nicht angefordert", cs_requested: "Zahlung angefordert ({0})",
  contractId: "Vertragsnummer", statusMsg: "Zahlungsstatus: {0} ({1})", paymentNow: "Zahlungsaufforderung {0}: jetzt {1}.",
  statusSigned: "bestätigt durch eine signierte Mitteilung von kanal", statusRecord: "laut kanals Datensatz, ohne signierte Mitteilung",
  sentPaymentTitle: "Ihre Zahlungsaufforderung an {0}",
});
Object.assign(T.en, {
  asOffice: "As {0}", sendOfferTitle: "Send offer", sendPaymentTitle: "Send payment request",
  itemN: "Item {0}", itemDesc: "Description", itemQty: "Quantity", itemPrice: "Unit price, gross, in euro",
  itemVat: "VAT rate in percent", addItem: "Add an item", removeItem: "Remove item {0}",
  validDays: "Valid for (days)", offerTerms: "Terms (optional)", accountPw: "Account password",
  accountPwHint: "Signing for the office needs your device and your account password. If your account has none yet, this becomes its password.",
  signSend: "Sign and send the offer", contractLink: "Contract", noContract: "No contract (a fee)",
  contractOpt: "Contract {0} over {1}", contractOptShort: "Contract {0}",
  payAmount: "Amount in euro", payAmountHint: "For a contract, the amount comes from the contract.",
  payCreditor: "Payee", payIban: "IBAN", payBic: "BIC (optional)", payPurpose: "Purpose",
  payReference: "RF reference (optional, made if empty)", payDue: "Due (YYYY-MM-DD)", sendPayment: "Send payment request",
  formErrors: "Please correct: {0}", offerSent: "Offer over {0} sent to {1}.", paymentSent: "Payment request over {0} sent to {1}.",
  sentOffer: "Offer sent", sentPayment: "Payment request sent: {0}", viewStatus: "View status",
  contractMsg: "Contract signed by {0}", viewContract: "View the contract",
  contractTitle: "Contract with {0}", contractVerified: "Verified: signed by {0} at {1}, the offer of {2}; registered by kanal at {3}.",
  contractState: "State", cs_signed: "signed, payment not requested", cs_requested: "payment requested ({0})",
  contractId: "Contract number", statusMsg: "Payment status: {0} ({1})", paymentNow: "Payment request {0}: now {1}.",
  statusSigned: "confirmed by a signed notice from kanal", statusRecord: "by kanal's record, without a signed notice",
  sentPaymentTitle: "Your payment request to {0}",
});

const office = (() => {
  let items = 1;      // rows in the offer form
  let detail = null;  // {entry, kind, view} open in #odetail
  const el = (tag, props, ...children) => {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "text") n.textContent = v;
      else n.setAttribute(k, v);
    }
    n.append(...children.filter((c) => c !== null && c !== undefined));
    return n;
  };
  const money = (cents, cur) => new Intl.NumberFormat(lang, { style: "currency", currency: cur || "EUR" }).format(cents / 100);
  const when = (iso) => new Date(iso).toLocaleString(lang, { dateStyle: "medium", timeStyle: "short" });
  const day = (ymd) => new Date(ymd + "T12:00:00Z").toLocaleDateString(lang, { dateStyle: "medium" });

  // agentOrg is the organisation the open conversation is the office's
  // with a citizen, when this account is one of its agents.
  function agentOrg() {
    const p = state.current;
    if (!p || !p.org || !p.account || !state.me) return null;
    return (state.me.orgs || []).find((o) => o.org_id === p.org) || null;
  }

  // field makes a labelled input; its hint and error are tied to it.
  function field(id, label, attrs, hint) {
    const input = el(attrs.tag || "input", Object.assign({ id, name: id }, attrs.tag ? {} : { type: "text" }, attrs.props || {}));
    const out = [el("label", { for: id, text: label }), input];
    if (hint) {
      out.push(el("p", { class: "hint", id: id + "-hint", text: hint }));
      input.setAttribute("aria-describedby", id + "-hint");
    }
    return out;
  }

  function itemRow(i) {
    const fs = el("fieldset", { class: "item", id: "offer-item-" + i }, el("legend", { text: t("itemN", i + 1) }));
    fs.append(...field(`offer-item-${i}-description`, t("itemDesc"), { props: { required: "", maxlength: "200" } }),
      ...field(`offer-item-${i}-quantity`, t("itemQty"), { props: { inputmode: "numeric", required: "", value: "1" } }),
      ...field(`offer-item-${i}-price`, t("itemPrice"), { props: { inputmode: "decimal", required: "" } }),
      ...field(`offer-item-${i}-vat`, t("itemVat"), { props: { inputmode: "decimal", required: "", value: "19" } }));
    return fs;
  }

  function offerForm(org) {
    const form = el("form", { id: "form-offer", novalidate: "" });
    const list = el("div", { id: "offer-items" });
    for (let i = 0; i < items; i++) list.append(itemRow(i));
    const add = el("button", { type: "button", id: "offer-add", class: "secondary", text: t("addItem") });
    add.addEventListener("click", () => { list.append(itemRow(items)); items++; $(`offer-item-${items - 1}-description`).focus(); });
    const legend = el("legend", { text: t("sendOfferTitle") });
    const fs = el("fieldset", { class: "office-form" }, legend, list, add,
      ...field("offer-valid", t("validDays"), { props: { inputmode: "numeric", required: "", value: "14" } }),
      ...field("offer-terms", t("offerTerms"), { tag: "textarea", props: { rows: "2", maxlength: "4000" } }),
      ...field("offer-password", t("accountPw"), { props: { type: "password", autocomplete: "current-password", required: "" } }, t("accountPwHint")),
      el("button", { type: "submit", id: "offer-send", text: t("signSend") }));
    form.append(fs);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const n = form.querySelectorAll("fieldset.item").length;
      const data = { items: [], valid_days: $("offer-valid").value, terms: $("offer-terms").value };
      for (let i = 0; i < n; i++) {
        data.items.push({ description: $(`offer-item-${i}-description`).value, quantity: $(`offer-item-${i}-quantity`).value,
          unit_price: $(`offer-item-${i}-price`).value, vat: $(`offer-item-${i}-vat`).value });
      }
      submit(form, () => kanalGo.sendOffer(JSON.stringify(state.current), JSON.stringify(data), $("offer-password").value), (e) => {
        status(t("offerSent", money(offerTotal(data)), peerName(state.current)));
        items = 1;
        return e;
      });
    });
    return form;
  }

  // offerTotal is only for the status line; the SDK computes the total
  // that is signed.
  function offerTotal(d) {
    let c = 0;
    for (const it of d.items) c += Math.round(Number(it.unit_price.replace(",", ".")) * 100) * Number(it.quantity);
    return c;
  }

  function contractsHere() {
    const k = convKey(state.current);
    return state.entries.filter((e) => e.kind === "contract" && e.from !== "me" && convKey(e.peer) === k && e.body);
  }

  // contractOptions are the choices of the contract a payment request is
  // for: none (a fee), or a contract the citizen signed here.
  function contractOptions() {
    const out = [el("option", { value: "", text: t("noContract") })];
    for (const c of contractsHere()) {
      const id = c.body.contract_id;
      const total = contractTotals[id];
      out.push(el("option", { value: id, text: total ? t("contractOpt", id.slice(0, 12) + "…", money(total)) : t("contractOptShort", id.slice(0, 12) + "…") }));
    }
    return out;
  }

  function updateContracts() {
    const sel = $("pay-contract");
    if (!sel) return;
    const v = sel.value;
    sel.replaceChildren(...contractOptions());
    sel.value = v;
  }

  function paymentForm(org) {
    const form = el("form", { id: "form-pay", novalidate: "" });
    const sel = el("select", { id: "pay-contract", name: "pay-contract" }, ...contractOptions());
    const due = new Date(Date.now() + 14 * 864e5).toISOString().slice(0, 10);
    const fs = el("fieldset", { class: "office-form" }, el("legend", { text: t("sendPaymentTitle") }),
      el("label", { for: "pay-contract", text: t("contractLink") }), sel,
      ...field("pay-amount", t("payAmount"), { props: { inputmode: "decimal" } }, t("payAmountHint")),
      ...field("pay-creditor", t("payCreditor"), { props: { required: "", maxlength: "70", value: org.name } }),
      ...field("pay-iban", t("payIban"), { props: { required: "", autocomplete: "off" } }),
      ...field("pay-bic", t("payBic"), { props: { autocomplete: "off" } }),
      ...field("pay-purpose", t("payPurpose"), { props: { required: "", maxlength: "140" } }),
      ...field("pay-reference", t("payReference"), { props: { autocomplete: "off" } }),
      ...field("pay-due", t("payDue"), { props: { required: "", value: due, inputmode: "numeric" } }),
      ...field("pay-password", t("accountPw"), { props: { type: "password", autocomplete: "current-password", required: "" } }, t("accountPwHint")),
      el("button", { type: "submit", id: "pay-send", text: t("sendPayment") }));
    form.append(fs);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const data = { contract_id: $("pay-contract").value, amount: $("pay-amount").value, creditor: $("pay-creditor").value,
        iban: $("pay-iban").value, bic: $("pay-bic").value, purpose: $("pay-purpose").value, reference: $("pay-reference").value, due: $("pay-due").value };
      submit(form, () => kanalGo.requestPayment(JSON.stringify(state.current), JSON.stringify(data), $("pay-password").value), (e) => {
        status(t("paymentSent", money(e.body.amount_cents, e.body.currency), peerName(state.current)));
        return e;
      });
    });
    return form;
  }

  const contractTotals = {}; // contract id → total, from contracts viewed

  // submit sends a form through the SDK: the mistakes it names are shown
  // at their fields (aria-invalid, the message tied with
  // aria-describedby) and the first takes the focus; nothing was sent.
  async function submit(form, call, done) {
    const btn = form.querySelector("button[type=submit]");
    clearErrors(form);
    btn.disabled = true;
    status(t("working"));
    let res;
    try {
      res = JSON.parse(await call());
    } catch (err) {
      btn.disabled = false;
      status(t("error", err.message || String(err)), true);
      return;
    }
    btn.disabled = false;
    if (res.errors) {
      for (const fe of res.errors) showError(fe.field, fe.message);
      status(t("formErrors", res.errors.map((fe) => fe.message).join("; ")), true);
      const first = $(res.errors[0].field);
      if (first) first.focus();
      return;
    }
    state.entries.push(res.entry);
    drawn = ""; // sent: the forms start empty again
    globalThis.render(); // the app's: the conversation and these tools
    done(res.entry);
  }

  function showError(id, msg) {
    const input = $(id);
    if (!input) return;
    const err = el("p", { class: "field-error", id: id + "-error", text: msg });
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", ((input.getAttribute("aria-describedby") || "") + " " + err.id).trim());
    input.insertAdjacentElement("afterend", err);
  }

  function clearErrors(form) {
    form.querySelectorAll(".field-error").forEach((p) => {
      const input = $(p.id.replace(/-error$/, ""));
      if (input) {
        input.removeAttribute("aria-invalid");
        const rest = (input.getAttribute("aria-describedby") || "").split(" ").filter((x) => x && x !== p.id).join(" ");
        if (rest) input.setAttribute("aria-describedby", rest); else input.removeAttribute("aria-describedby");
      }
      p.remove();
    });
  }

  // renderTools draws the agent's tools below the conversation: the two
  // forms, each in a disclosure, when the open conversation is an office's
  // with a citizen and this account is its agent. They are drawn again only
  // for another conversation or language, so that what is typed stays.
  let drawn = "";
  function renderTools() {
    const old = $("office-tools");
    const org = agentOrg();
    const key = state.current ? convKey(state.current) + "|" + lang : "";
    if (old && org && key === drawn) {
      updateContracts();
      renderDetail();
      return;
    }
    drawn = key;
    const wasOpen = old ? [...old.querySelectorAll("details")].map((d) => d.open) : [false, false];
    if (old) old.remove();
    if (!org) { closeDetail(); return; }
    const sec = el("section", { id: "office-tools", "aria-labelledby": "h-office" },
      el("h3", { id: "h-office", text: t("asOffice", org.name) }));
    const d1 = el("details", { id: "office-offer" }, el("summary", { text: t("sendOfferTitle") }), offerForm(org));
    const d2 = el("details", { id: "office-pay" }, el("summary", { text: t("sendPaymentTitle") }), paymentForm(org));
    d1.open = wasOpen[0];
    d2.open = wasOpen[1];
    sec.append(d1, d2);
    $("form-send").insertAdjacentElement("afterend", sec);
    renderDetail();
  }

  // decorate says in the conversation what a sent offer or payment
  // request, a contract and a payment status are, with a button that
  // opens the contract or the request's status.
  function decorate(li, e) {
    const text = li.querySelector(".text");
    const b = e.body;
    if (e.kind === "payment.status" && b) {
      text.textContent = t("statusMsg", t("st_" + b.status), money(b.amount_cents));
      li.classList.add("notice");
      li.dataset.request = b.request_id;
      return;
    }
    if (e.from === "me" && e.kind === "offer") { text.textContent = t("sentOffer") + ": " + e.text; return; }
    let button = null;
    if (e.from === "me" && e.kind === "payment.request" && b) {
      text.textContent = t("sentPayment", money(b.amount_cents, b.currency));
      button = el("button", { type: "button", class: "open-item", text: t("viewStatus") });
      button.addEventListener("click", () => open(e, "payment", () => kanalGo.sentPayment(e.id)));
    }
    if (e.from !== "me" && e.kind === "contract" && b) {
      text.textContent = t("contractMsg", e.name || e.from);
      button = el("button", { type: "button", class: "open-item", text: t("viewContract") });
      button.addEventListener("click", () => open(e, "contract", () => kanalGo.contract(e.id)));
    }
    if (button) {
      button.dataset.item = e.id;
      li.append(button);
    }
  }

  async function open(e, kind, load) {
    status(t("working"));
    try {
      detail = { entry: e, kind, load, view: JSON.parse(await load()) };
      if (kind === "contract") contractTotals[detail.view.contract_id] = detail.view.total_cents;
      renderDetail();
      updateContracts();
      status("");
      $("h-odetail").focus();
    } catch (err) {
      status(t("error", err.message || String(err)), true);
    }
  }

  function renderDetail() {
    const old = $("odetail");
    if (!detail) { if (old) old.remove(); return; }
    if (!state.current || convKey(state.current) !== convKey(detail.entry.peer)) { closeDetail(); return; }
    const sec = old || el("section", { id: "odetail", "aria-labelledby": "h-odetail" });
    sec.replaceChildren(...(detail.kind === "contract" ? contractView(detail.view) : paymentView(detail.view)));
    if (!old) $("messages").parentElement.insertAdjacentElement("afterend", sec);
  }

  function closeDetail() {
    detail = null;
    const s = $("odetail");
    if (s) s.remove();
  }

  function defs(rows) {
    const dl = el("dl", { class: "facts" });
    for (const [k, v, id] of rows) {
      if (v === undefined || v === null || v === "") continue;
      dl.append(el("dt", { text: t(k) }), el("dd", id ? { text: v, id } : { text: v }));
    }
    return dl;
  }

  function contractView(v) {
    const table = el("table", { class: "items" }, el("caption", { text: t("items") }),
      el("thead", {}, el("tr", {}, ...["description", "quantity", "unitPrice", "vat", "lineTotal"].map((k) => el("th", { scope: "col", text: t(k) })))));
    const body = el("tbody");
    for (const it of v.items) {
      body.append(el("tr", {}, el("td", { text: it.description }), el("td", { text: String(it.quantity) }), el("td", { text: money(it.unit_cents, v.currency) }),
        el("td", { text: new Intl.NumberFormat(lang).format(it.vat_basis_points / 100) + " %" }), el("td", { text: money(it.quantity * it.unit_cents, v.currency) })));
    }
    table.append(body, el("tfoot", {},
      el("tr", {}, el("th", { scope: "row", colspan: "4", text: t("total") }), el("td", { id: "contract-total", text: money(v.total_cents, v.currency) })),
      el("tr", {}, el("th", { scope: "row", colspan: "4", text: t("vatIncluded") }), el("td", { text: money(v.vat_cents, v.currency) }))));
    const st = v.payment_id ? t("cs_requested", t("st_" + v.payment_status)) : t("cs_signed");
    return [el("h2", { id: "h-odetail", tabindex: "-1", text: t("contractTitle", v.buyer) }),
      el("p", { id: "contract-verified", text: t("contractVerified", v.buyer, when(v.signed_at), v.org_name, when(v.registered_at)) }),
      table, defs([["contractId", v.contract_id, "contract-id"], ["contractState", st, "contract-state"]])];
  }

  function paymentView(v) {
    const st = t("st_" + v.status) + (v.status === "open" ? "" : " (" + t(v.status_signed ? "statusSigned" : "statusRecord") + ")");
    return [el("h2", { id: "h-odetail", tabindex: "-1", text: t("sentPaymentTitle", peerName(detail.entry.peer)) }),
      defs([["amount", money(v.amount_cents, v.currency)], ["payee", v.creditor], ["iban", v.iban], ["bic", v.bic], ["purpose", v.purpose],
        ["reference", v.reference], ["due", day(v.due_date)], ["payStatus", st, "sent-pay-status"]])];
  }

  // A payment's new status, from a notice kanal.wasm verified: the open
  // views of it are loaded again, without a reload and without moving the
  // focus, and the status line (a live region) says it.
  document.addEventListener("kanal:payment", async (ev) => {
    const m = ev.detail;
    status(t("paymentNow", m.request_id, t("st_" + m.payment.status)));
    if (!detail) return;
    const v = detail.view;
    if (v.request_id === m.request_id || v.payment_id === m.request_id) {
      const focused = document.activeElement && document.activeElement.id === "h-odetail";
      try {
        detail.view = JSON.parse(await detail.load());
        renderDetail();
        if (focused) $("h-odetail").focus();
      } catch (err) {
        status(t("error", err.message || String(err)), true);
      }
    }
  });

  return { render: renderTools, decorate };
})();
globalThis.office = office;
