// kanal web app: forms and the case inbox. A form request opens the form
// below the conversation; the office's agents have their case inbox.
// Fetching and verifying the template, checking the answers, opening the
// case, encrypting and sending run in kanal.wasm (the Go SDK: kanalGo.form,
// formState, submitForm, cases, case, setCaseStatus, assignCase); this
// file renders what they return and reads what the person typed.
"use strict";

Object.assign(T.de, {
  openForm: "Formular ausfüllen", formMsg: "Formular „{0}“", formTitle: "Formular: {0}", submittedMsg: "Formular eingereicht: Fall {0}",
  requiredNote: "Mit * markierte Angaben sind Pflichtangaben.", requiredMark: "Pflichtangabe", fee: "Gebühr: {0} ({1}), fällig nach dem Absenden.",
  yes: "Ja", no: "Nein", confirmBox: "Ich bestätige das.", row: "Eintrag {0}", addRow: "Eintrag hinzufügen", removeRow: "Eintrag {0} entfernen",
  fileHint: "Datei: {0}, höchstens {1}.", jsonHint: "Als JSON-Wert.", chooseSome: "Wählen Sie {0} bis {1}.",
  submitForm: "Formular senden", submitting: "Die Antworten werden geprüft, verschlüsselt und gesendet …",
  errorsTitle: "Bitte korrigieren Sie {0} Angabe(n); es wurde nichts gesendet.", formErrors: "Nichts gesendet: {0} Angabe(n) passen nicht zum Formular.",
  formSent: "Formular gesendet: Fall {0}.", receiptFormTitle: "Eingangsbestätigung", caseId: "Fall", caseStatus: "Status", dueDate: "Bearbeitung bis",
  submittedAt: "Gesendet am", feeRequest: "Gebührenforderung", receiptFormText: "Ihre Antworten sind Ende-zu-Ende verschlüsselt an {0} gesendet; kanal sieht sie nicht.",
  cs_received: "Eingegangen", cs_in_progress: "In Bearbeitung", cs_needs_information: "Rückfrage", cs_decided: "Entschieden",
  inboxButton: "Fälle von {0}", casesTitle: "Fälle von {0}", casesCaption: "Fälle, neueste zuerst", noCases: "Keine Fälle.",
  colCase: "Fall", colForm: "Formular", colCitizen: "Bürgerin oder Bürger", colStatus: "Status", colDue: "Fällig", colAnswers: "Antworten", colOpen: "Aktion",
  openCase: "Fall {0} öffnen", ans_checked: "auf diesem Gerät, geprüft", ans_refused: "passen NICHT zum Formular",
  ans_mismatch: "WIDERSPRECHEN dem Fall bei kanal", ans_missing: "nicht auf diesem Gerät",
  caseTitle: "Fall {0}: {1}", citizen: "Bürgerin oder Bürger", assignee: "Zuständig", form: "Formular", answersTitle: "Antworten",
  answersNote: "Auf diesem Gerät entschlüsselt und gegen das geprüfte Formular geprüft.", historyTitle: "Verlauf",
  historyLine: "{0}: {1}, von {2}", changeTitle: "Status ändern", newStatus: "Neuer Status", messageTo: "Nachricht an {0} als Behörde (optional)",
  setStatus: "Status ändern", assignMe: "Mir zuweisen", backToCases: "Zurück zur Liste", statusSet: "Fall {0} ist jetzt: {1}.",
  caseFinal: "Der Fall ist entschieden und abgeschlossen.", fileValue: "Datei {0} ({1}, {2})", fieldMissing: "nicht beantwortet",
});
Object.assign(T.en, {
  openForm: "Fill in the form", formMsg: "Form “{0}”", formTitle: "Form: {0}", submittedMsg: "Form submitted: case {0}",
  requiredNote: "Fields marked * are required.", requiredMark: "required", fee: "Fee: {0} ({1}), due after sending.",
  yes: "Yes", no: "No", confirmBox: "I confirm this.", row: "Entry {0}", addRow: "Add an entry", removeRow: "Remove entry {0}",
  fileHint: "File: {0}, at most {1}.", jsonHint: "As a JSON value.", chooseSome: "Choose {0} to {1}.",
  submitForm: "Send the form", submitting: "Checking, encrypting and sending the answers …",
  errorsTitle: "Please correct {0} answer(s); nothing was sent.", formErrors: "Nothing sent: {0} answer(s) do not fit the form.",
  formSent: "Form sent: case {0}.", receiptFormTitle: "Receipt", caseId: "Case", caseStatus: "Status", dueDate: "Processed by",
  submittedAt: "Sent at", feeRequest: "Fee payment request", receiptFormText: "Your answers went end to end encrypted to {0}; kanal does not see them.",
  cs_received: "Received", cs_in_progress: "In progress", cs_needs_information: "Needs information", cs_decided: "Decided",
  inboxButton: "Cases of {0}", casesTitle: "Cases of {0}", casesCaption: "Cases, newest first", noCases: "No cases.",
  colCase: "Case", colForm: "Form", colCitizen: "Citizen", colStatus: "Status", colDue: "Due", colAnswers: "Answers", colOpen: "Action",
  openCase: "Open case {0}", ans_checked: "on this device, checked", ans_refused: "do NOT fit the form",
  ans_mismatch: "CONTRADICT kanal's case", ans_missing: "not on this device",
  caseTitle: "Case {0}: {1}", citizen: "Citizen", assignee: "Assigned to", form: "Form", answersTitle: "Answers",
  answersNote: "Decrypted on this device and checked against the verified form.", historyTitle: "History",
  historyLine: "{0}: {1}, by {2}", changeTitle: "Change the status", newStatus: "New status", messageTo: "Message to {0} as the office (optional)",
  setStatus: "Change the status", assignMe: "Assign to me", backToCases: "Back to the list", statusSet: "Case {0} is now: {1}.",
  caseFinal: "The case is decided and closed.", fileValue: "File {0} ({1}, {2})", fieldMissing: "not answered",
});

const formsUI = (() => {
  let current = null; // the open form: {entry, view, errors, values}
  let inbox = null; // the open case inbox: {org, rows, open: case view or null}

  const el = (tag, props, ...children) => {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") n.textContent = v;
      else if (v === true) n.setAttribute(k, "");
      else n.setAttribute(k, v);
    }
    n.append(...children.filter((c) => c !== null && c !== undefined));
    return n;
  };
  const tx = (text) => (text ? (lang === "en" ? text.en : text.de) : "");
  const day = (ymd) => new Date(ymd + "T12:00:00Z").toLocaleDateString(lang, { dateStyle: "medium" });
  const when = (iso) => new Date(iso).toLocaleString(lang, { dateStyle: "medium", timeStyle: "short" });
  const money = (cents) => new Intl.NumberFormat(lang, { style: "currency", currency: "EUR" }).format(cents / 100);
  const bytes = (n) => (n >= 1 << 20 ? (n / (1 << 20)).toLocaleString(lang, { maximumFractionDigits: 1 }) + " MB" : Math.ceil(n / 1024) + " KB");
  const optText = (raw) => (typeof raw === "string" ? raw : JSON.stringify(raw));
  const fid = (name) => "ff-" + name;
  const put = (parent, ...kids) => parent.append(...kids.filter((k) => k !== null && k !== undefined));

  function decorate(li, e) {
    if (e.from === "me") return;
    const text = li.querySelector(".text");
    if (e.kind === "form.request" && e.body) {
      text.textContent = t("formMsg", e.body.title);
      const btn = el("button", { type: "button", class: "open-item", text: t("openForm") });
      btn.dataset.form = e.id;
      btn.addEventListener("click", () => open(e));
      li.append(btn);
    }
    if (e.kind === "form.submission" && e.peer.org && e.peer.account && e.text) {
      text.textContent = t("submittedMsg", e.text);
      const btn = el("button", { type: "button", class: "open-item", text: t("openCase", e.text) });
      btn.addEventListener("click", () => openInbox(e.peer.org, e.text));
      li.append(btn);
    }
  }

  // ---- the citizen's form ----
  async function open(e) {
    status(t("working"));
    try {
      const view = JSON.parse(await kanalGo.form(e.id));
      current = { entry: e, view, errors: [], values: view.prefill || {} };
      render();
      status("");
      $("h-form").focus();
    } catch (err) {
      closeForm();
      status(t("error", err.message || String(err)), true);
    }
  }

  function formPanel() {
    let sec = $("form-panel");
    if (!sec) {
      sec = el("section", { id: "form-panel", "aria-labelledby": "h-form" });
      $("conv").append(sec);
    }
    return sec;
  }

  function closeForm() {
    current = null;
    const s = $("form-panel");
    if (s) s.remove();
  }

  function render() {
    if (current) {
      if (!state.current || convKey(state.current) !== convKey(current.entry.peer)) closeForm();
      else {
        if ($("form-fill")) current.values = collect($("form-fill")).answers;
        formPanel().replaceChildren(...renderForm(current.view));
      }
    }
    if (inbox) renderInbox();
  }

  function renderForm(v) {
    const out = [el("h2", { id: "h-form", tabindex: "-1", text: t("formTitle", tx(v.title)) })];
    if (v.description) out.push(el("p", { text: tx(v.description) }));
    if (v.fee_cents) out.push(el("p", { class: "hint", text: t("fee", money(v.fee_cents), v.fee_purpose) }));
    if (v.submitted) {
      out.push(formReceipt(v));
      return out;
    }
    out.push(el("p", { class: "hint", text: t("requiredNote") }));
    const form = el("form", { id: "form-fill", novalidate: true });
    if (current.errors.length) form.append(errorSummary(current.errors));
    for (const p of v.pages) {
      const fs = el("fieldset", { class: "question" }, el("legend", { text: tx(p.title) }));
      for (const f of p.fields) fs.append(field(f, v));
      form.append(fs);
    }
    form.append(el("button", { type: "submit", id: "form-submit", text: t("submitForm") }));
    form.addEventListener("change", () => refreshState(form, v));
    form.addEventListener("submit", (ev) => { ev.preventDefault(); submit(form, v); });
    out.push(form);
    return out;
  }

  function errorSummary(errors) {
    const list = el("ul");
    for (const e of errors) {
      const msg = (lang === "en" ? e.en : e.de);
      const label = labelOf(e.field);
      const text = label ? label + ": " + msg : msg;
      list.append(el("li", {}, e.field && fieldDef(e.field) ? el("a", { href: "#" + firstInput(e.field), text }) : el("span", { text })));
    }
    return el("div", { id: "form-errors", class: "error-summary", role: "group", "aria-labelledby": "h-form-errors" },
      el("h3", { id: "h-form-errors", tabindex: "-1", text: t("errorsTitle", errors.length) }), list);
  }

  function labelOf(name) {
    for (const p of current.view.pages) for (const f of p.fields) if (f.name === name) return tx(f.label);
    return name;
  }
  function firstInput(name) {
    for (const p of current.view.pages) for (const f of p.fields) if (f.name === name) {
      if (["boolean", "choice", "checks"].includes(f.control)) return fid(name) + "-0";
      if (f.control === "list") return fid(name) + "-0-" + f.columns[0].name;
      return fid(name);
    }
    return "";
  }

  // field renders one field: its label (a legend for a group), the
  // required mark, help, and the place for its errors, which the inputs
  // name in aria-describedby.
  function field(f, v) {
    const id = fid(f.name);
    const required = v.required.includes(f.name);
    const errs = current.errors.filter((e) => e.field === f.name).map((e) => (lang === "en" ? e.en : e.de));
    const helpId = id + "-help", errId = id + "-error";
    const described = [f.help ? helpId : null, errs.length ? errId : null].filter(Boolean).join(" ") || null;
    const mark = () => el("span", { class: "req", text: " *", title: t("requiredMark") });
    const labelText = (tag, props) => el(tag, props, tx(f.label), required ? mark() : null);
    const help = f.help ? el("p", { class: "hint", id: helpId, text: tx(f.help) }) : null;
    const error = el("p", { class: "field-error", id: errId, hidden: !errs.length, text: errs.join(" ") });
    const val = current.values[f.name];
    const inv = errs.length ? "true" : null;
    const wrap = el("div", { class: "field", hidden: !v.visible.includes(f.name) });
    wrap.dataset.field = f.name;
    wrap.dataset.control = f.control;
    const group = (hint, ...inputs) => {
      const fs = el("fieldset", { class: "group", "aria-describedby": [hint ? hint.id : null, described].filter(Boolean).join(" ") || null },
        labelText("legend"), help, hint, ...inputs, error);
      put(wrap, fs);
      return wrap;
    };
    const choice = (type, name, idx, value, text, checked) => el("div", { class: "choice" },
      el("input", { type, id: name + "-" + idx, name, value, checked, "aria-invalid": inv, required: type === "radio" && required }),
      el("label", { for: name + "-" + idx, text }));
    switch (f.control) {
      case "boolean":
        return group(null, choice("radio", id, 0, "true", t("yes"), val === true), choice("radio", id, 1, "false", t("no"), val === false));
      case "choice":
        return group(null, ...f.options.map((o, j) => choice("radio", id, j, JSON.stringify(o), optText(o), JSON.stringify(val) === JSON.stringify(o))));
      case "checks": {
        const hint = el("p", { class: "hint", id: id + "-hint", text: t("chooseSome", f.min_items || 0, f.max_items || f.options.length) });
        const chosen = (val || []).map((x) => JSON.stringify(x));
        return group(hint, ...f.options.map((o, j) => choice("checkbox", id, j, JSON.stringify(o), optText(o), chosen.includes(JSON.stringify(o)))));
      }
      case "list": {
        const rows = el("div", { class: "rows", id: id + "-rows" });
        const items = Array.isArray(val) && val.length ? val : [{}];
        items.forEach((item) => rows.append(listRow(f, id, item, inv)));
        const add = el("button", { type: "button", class: "secondary", id: id + "-add", text: t("addRow") });
        add.addEventListener("click", () => {
          rows.append(listRow(f, id, {}, inv));
          renumber(f, id, rows);
          rows.lastElementChild.querySelector("input, select, textarea").focus();
        });
        group(null, rows, add);
        renumber(f, id, rows);
        return wrap;
      }
    }
    let input;
    const common = { id, name: f.name, required, "aria-describedby": described, "aria-invalid": inv };
    switch (f.control) {
      case "textarea":
        input = el("textarea", Object.assign({ rows: "4", maxlength: f.max_length ? String(f.max_length) : null }, common));
        input.value = val === undefined ? "" : String(val);
        break;
      case "confirm":
        input = el("input", Object.assign({ type: "checkbox", checked: val === true }, common));
        put(wrap, el("div", { class: "choice" }, input, labelText("label", { for: id })), help, error);
        return wrap;
      case "file": {
        const hint = el("p", { class: "hint", id: id + "-hint", text: t("fileHint", f.accept.join(", "), bytes(f.max_bytes)) });
        common["aria-describedby"] = [hint.id, described].filter(Boolean).join(" ");
        input = el("input", Object.assign({ type: "file", accept: f.accept.join(",") }, common));
        put(wrap, labelText("label", { for: id }), help, hint, input, error);
        return wrap;
      }
      case "json": {
        const hint = el("p", { class: "hint", id: id + "-hint", text: t("jsonHint") });
        common["aria-describedby"] = [hint.id, described].filter(Boolean).join(" ");
        input = el("textarea", Object.assign({ rows: "3" }, common));
        input.value = val === undefined ? "" : JSON.stringify(val);
        put(wrap, labelText("label", { for: id }), help, hint, input, error);
        return wrap;
      }
      default: {
        const type = { date: "date", email: "email" }[f.control] || "text";
        input = el("input", Object.assign({ type, maxlength: f.max_length ? String(f.max_length) : null,
          inputmode: f.control === "number" ? "decimal" : null, autocomplete: autocomplete(f.name) }, common));
        input.value = val === undefined ? "" : String(val);
      }
    }
    put(wrap, labelText("label", { for: id }), help, input, error);
    return wrap;
  }

  // autocomplete names the personal data a browser may fill in (WCAG
  // 1.3.5), by the field names the shipped templates use.
  function autocomplete(name) {
    return { family_name: "family-name", given_name: "given-name", birth_date: "bday", street: "street-address",
      postcode: "postal-code", city: "address-level2", phone: "tel", email: "email" }[name] || null;
  }

  function listRow(f, id, item, inv) {
    const fs = el("fieldset", { class: "row" }, el("legend"));
    for (const c of f.columns) {
      const input = el("input", { type: c.control === "date" ? "date" : "text", inputmode: c.control === "number" ? "decimal" : null,
        required: c.column_required, "aria-invalid": inv, "aria-describedby": inv ? fid(f.name) + "-error" : null });
      input.dataset.column = c.name;
      if (item[c.name] !== undefined) input.value = String(item[c.name]);
      fs.append(el("label", { text: c.label.de === c.label.en ? c.label.de : tx(c.label) }), input);
    }
    const rm = el("button", { type: "button", class: "secondary remove" });
    rm.addEventListener("click", () => {
      const rows = fs.parentElement;
      fs.remove();
      if (!rows.children.length) rows.append(listRow(f, id, {}, inv));
      renumber(f, id, rows);
      $(id + "-add").focus();
    });
    fs.append(rm);
    return fs;
  }

  // renumber gives a list's rows their legends, ids and labels in order.
  function renumber(f, id, rows) {
    [...rows.children].forEach((fs, i) => {
      fs.querySelector("legend").textContent = t("row", i + 1);
      fs.querySelectorAll("input").forEach((inp) => {
        inp.id = id + "-" + i + "-" + inp.dataset.column;
        inp.previousElementSibling.htmlFor = inp.id;
      });
      fs.querySelector(".remove").textContent = t("removeRow", i + 1);
    });
  }

  // typed reads a typed value as the field's schema takes it: a number
  // for a number (a decimal comma too), else the text; Go's check judges.
  function typed(control, s) {
    if (control === "number") {
      const n = Number(s.trim().replace(",", "."));
      return s.trim() !== "" && Number.isFinite(n) ? n : s;
    }
    return s;
  }

  // collect reads the answers of the fields shown, in the form Template.
  // Check takes, and the files to send.
  function collect(form) {
    const answers = {}, files = [];
    for (const wrap of form.querySelectorAll(".field")) {
      if (wrap.hidden) continue;
      const name = wrap.dataset.field, control = wrap.dataset.control, id = fid(name);
      switch (control) {
        case "boolean": case "choice": {
          const c = wrap.querySelector(`input[name="${id}"]:checked`);
          if (c) answers[name] = JSON.parse(c.value);
          break;
        }
        case "checks": {
          const cs = [...wrap.querySelectorAll(`input[name="${id}"]:checked`)].map((c) => JSON.parse(c.value));
          if (cs.length) answers[name] = cs;
          break;
        }
        case "confirm":
          if ($(id).checked) answers[name] = true;
          break;
        case "list": {
          const f = fieldDef(name);
          const items = [];
          for (const row of wrap.querySelectorAll("fieldset.row")) {
            const item = {};
            for (const inp of row.querySelectorAll("input")) {
              const c = f.columns.find((x) => x.name === inp.dataset.column);
              if (inp.value.trim() !== "") item[c.name] = typed(c.control, inp.value);
            }
            if (Object.keys(item).length) items.push(item);
          }
          if (items.length) answers[name] = items;
          break;
        }
        case "file": {
          const file = $(id).files[0];
          if (file) files.push({ field: name, file });
          break;
        }
        case "json": {
          const s = $(id).value.trim();
          if (s !== "") { try { answers[name] = JSON.parse(s); } catch (e) { answers[name] = s; } }
          break;
        }
        default: {
          const s = $(id).value;
          if (s.trim() !== "") answers[name] = typed(control, s);
        }
      }
    }
    return { answers, files };
  }

  function fieldDef(name) {
    for (const p of current.view.pages) for (const f of p.fields) if (f.name === name) return f;
    return null;
  }

  // refreshState shows and hides fields and their required marks as the
  // template's show_if and require_if say for the answers so far.
  async function refreshState(form, v) {
    try {
      const st = JSON.parse(await kanalGo.formState(current.entry.id, JSON.stringify(collect(form).answers)));
      if (!current || current.view !== v) return;
      v.visible = st.visible;
      v.required = st.required;
      for (const wrap of form.querySelectorAll(".field")) {
        const name = wrap.dataset.field;
        wrap.hidden = !st.visible.includes(name);
        const req = st.required.includes(name);
        const title = wrap.querySelector("label, legend");
        const mark = title.querySelector(".req");
        if (req && !mark) title.append(el("span", { class: "req", text: " *", title: t("requiredMark") }));
        if (!req && mark) mark.remove();
        wrap.querySelectorAll(":scope > input, :scope > textarea, :scope .choice input[type=radio]").forEach((i) => { i.required = req; });
      }
    } catch (err) {
      status(t("error", err.message || String(err)), true);
    }
  }

  async function submit(form, v) {
    const { answers, files } = collect(form);
    current.values = answers;
    const btn = $("form-submit");
    btn.disabled = true;
    status(t("submitting"));
    try {
      const payload = [];
      for (const { field, file } of files) {
        payload.push({ field, name: file.name, type: file.type || "application/octet-stream", data: new Uint8Array(await file.arrayBuffer()) });
      }
      const res = JSON.parse(await kanalGo.submitForm(current.entry.id, JSON.stringify(answers), payload));
      if (res.errors) {
        current.errors = res.errors;
        render();
        status(t("formErrors", res.errors.length), true);
        $("h-form-errors").focus();
        return;
      }
      current.errors = [];
      current.view = Object.assign({}, v, { submitted: res });
      render();
      status(t("formSent", res.case_id));
      $("h-form-receipt").focus();
    } catch (err) {
      status(t("error", err.message || String(err)), true);
    } finally {
      if ($("form-submit")) $("form-submit").disabled = false;
    }
  }

  function facts(rows) {
    const dl = el("dl", { class: "facts" });
    for (const [k, v, id] of rows) {
      if (v === undefined || v === null || v === "") continue;
      dl.append(el("dt", { text: t(k) }), el("dd", { id, text: v }));
    }
    return dl;
  }

  function formReceipt(v) {
    const r = v.submitted;
    return el("div", { class: "receipt" },
      el("h3", { id: "h-form-receipt", tabindex: "-1", text: t("receiptFormTitle") }),
      el("p", { text: t("receiptFormText", v.org_name) }),
      facts([["caseId", r.case_id, "form-case"], ["caseStatus", t("cs_" + r.status), "form-case-status"], ["dueDate", day(r.due_date)],
        ["submittedAt", when(r.at)], ["feeRequest", r.fee_request]]));
  }

  // ---- the office's case inbox ----
  function addInboxButtons() {
    const nav = document.querySelector("#view-app nav");
    nav.querySelectorAll(".inbox-open").forEach((b) => b.remove());
    for (const o of (state.me && state.me.orgs) || []) {
      const b = el("button", { type: "button", class: "inbox-open secondary", id: "cases-" + o.org_id, text: t("inboxButton", o.name) });
      b.addEventListener("click", () => openInbox(o.org_id));
      nav.append(b);
    }
  }

  function inboxPanel() {
    let sec = $("cases");
    if (!sec) {
      sec = el("section", { id: "cases", "aria-labelledby": "h-cases" });
      document.querySelector("#view-app .cols").append(sec);
    }
    return sec;
  }

  async function openInbox(org, caseID) {
    status(t("working"));
    try {
      const rows = JSON.parse(await kanalGo.cases(org));
      state.current = null;
      closeForm();
      if (globalThis.participate) participate.close();
      globalThis.render();
      inbox = { org, rows, open: null };
      if (caseID) {
        inbox.open = JSON.parse(await kanalGo.case(caseID));
      }
      renderInbox();
      status("");
      $(inbox.open ? "h-case" : "h-cases").focus();
    } catch (err) {
      status(t("error", err.message || String(err)), true);
    }
  }

  function closeInbox() {
    inbox = null;
    const s = $("cases");
    if (s) s.remove();
  }

  function orgLabel(org) { return state.orgNames[org] || org; }

  function renderInbox() {
    const sec = inboxPanel();
    const out = [el("h2", { id: "h-cases", tabindex: "-1", text: t("casesTitle", orgLabel(inbox.org)) })];
    if (inbox.open) {
      out.push(...renderCase(inbox.open));
    } else if (!inbox.rows.length) {
      out.push(el("p", { text: t("noCases") }));
    } else {
      const table = el("table", { class: "items", id: "case-list" }, el("caption", { text: t("casesCaption") }),
        el("thead", {}, el("tr", {}, ...["colCase", "colForm", "colCitizen", "colStatus", "colDue", "colAnswers", "colOpen"].map((k) => el("th", { scope: "col", text: t(k) })))));
      const body = el("tbody");
      for (const r of inbox.rows) {
        const btn = el("button", { type: "button", class: "secondary", text: t("open") });
        btn.dataset.case = r.id;
        btn.addEventListener("click", () => showCase(r.id));
        body.append(el("tr", {}, el("th", { scope: "row", text: r.id }), el("td", { text: r.template_id + " " + r.version }),
          el("td", { text: r.citizen_name || r.citizen }), el("td", { text: t("cs_" + r.status) }), el("td", { text: day(r.due_date) }),
          el("td", { text: t("ans_" + r.answers) }), el("td", {}, btn)));
      }
      table.append(body);
      out.push(el("div", { class: "table-wrap" }, table));
    }
    sec.replaceChildren(...out);
  }

  async function showCase(id) {
    status(t("working"));
    try {
      inbox.open = JSON.parse(await kanalGo.case(id));
      renderInbox();
      status("");
      $("h-case").focus();
    } catch (err) {
      status(t("error", err.message || String(err)), true);
    }
  }

  function value(raw) {
    if (raw === true) return t("yes");
    if (raw === false) return t("no");
    if (Array.isArray(raw)) return raw.map((x) => (x && typeof x === "object" ? Object.entries(x).map(([k, v]) => k + ": " + v).join(", ") : String(x))).join("; ");
    if (raw && typeof raw === "object") return JSON.stringify(raw);
    return String(raw);
  }

  function actorName(id, c, who) {
    if (id === c.citizen) return who;
    if (id === state.me.account) return t("me");
    return id;
  }

  function renderCase(v) {
    const c = v.case;
    const who = v.citizen_name || c.citizen;
    const out = [el("h3", { id: "h-case", tabindex: "-1", text: t("caseTitle", c.id, v.title ? tx(v.title) : c.template_id) }),
      facts([["caseStatus", t("cs_" + c.status), "case-status"], ["citizen", who], ["form", c.template_id + " " + c.version],
        ["dueDate", day(c.due_date)], ["assignee", c.assignee], ["feeRequest", c.fee_request]])];
    out.push(el("h4", { text: t("answersTitle") }));
    out.push(el("p", { id: "case-answer-state", class: v.answers === "checked" ? "hint" : "state", text: t("ans_" + v.answers) + (v.answers === "checked" ? " — " + t("answersNote") : "") }));
    if (v.fields.length) {
      const dl = el("dl", { class: "facts", id: "case-answers" });
      for (const f of v.fields) {
        dl.append(el("dt", { text: tx(f.label) }), el("dd", { text: f.file ? t("fileValue", f.file.name, f.file.mime, bytes(f.file.size)) : value(f.value) }));
      }
      out.push(dl);
    }
    for (const e of v.refused || []) out.push(el("p", { class: "state", text: e.field + ": " + (lang === "en" ? e.en : e.de) }));
    if (v.problem) out.push(el("p", { class: "state", text: v.problem }));
    out.push(el("h4", { text: t("historyTitle") }));
    out.push(el("ol", { id: "case-history" }, ...v.events.map((e) => el("li", { text: t("historyLine", when(e.at), t("cs_" + e.status), actorName(e.actor.replace(/^account:/, ""), c, who)) }))));
    if (!v.next.length) {
      out.push(el("p", { text: t("caseFinal") }));
    } else {
      const sel = el("select", { id: "case-new-status" }, ...v.next.map((s) => el("option", { value: s, text: t("cs_" + s) })));
      const msg = el("textarea", { id: "case-message", rows: "3" });
      const form = el("form", { id: "form-case-status", "aria-labelledby": "h-case-change" },
        el("h4", { id: "h-case-change", text: t("changeTitle") }),
        el("label", { for: "case-new-status", text: t("newStatus") }), sel,
        el("label", { for: "case-message", text: t("messageTo", who) }), msg,
        el("button", { type: "submit", text: t("setStatus") }));
      form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        busy(form, async () => {
          const to = sel.value;
          inbox.open = JSON.parse(await kanalGo.setCaseStatus(c.id, to, msg.value));
          inbox.rows = JSON.parse(await kanalGo.cases(inbox.org));
          renderInbox();
          status(t("statusSet", c.id, t("cs_" + to)));
          $("case-status").setAttribute("tabindex", "-1");
          $("case-status").focus();
        });
      });
      out.push(form);
    }
    const actions = el("div", { class: "actions" });
    if (!c.assignee || c.assignee !== state.me.account) {
      const assign = el("button", { type: "button", class: "secondary", id: "case-assign", text: t("assignMe") });
      assign.addEventListener("click", async () => {
        try {
          inbox.open = JSON.parse(await kanalGo.assignCase(c.id));
          renderInbox();
          $("h-case").focus();
        } catch (err) { status(t("error", err.message || String(err)), true); }
      });
      actions.append(assign);
    }
    const back = el("button", { type: "button", class: "secondary", id: "case-back", text: t("backToCases") });
    back.addEventListener("click", async () => {
      inbox.open = null;
      try { inbox.rows = JSON.parse(await kanalGo.cases(inbox.org)); } catch (err) { status(t("error", err.message || String(err)), true); }
      renderInbox();
      $("h-cases").focus();
    });
    actions.append(back);
    out.push(actions);
    return out;
  }

  document.addEventListener("kanal:entered", addInboxButtons);
  // Opening a conversation closes the inbox.
  document.addEventListener("click", (ev) => {
    if (inbox && ev.target.closest && ev.target.closest("#convs button")) closeInbox();
  });
  document.addEventListener("submit", (ev) => { if (inbox && ev.target.id === "form-new") closeInbox(); });

  return { decorate, render: () => { render(); if (state.me) addInboxButtons(); } };
})();
globalThis.formsUI = formsUI;
