// kanal web app: the page, IndexedDB and the device's WebCrypto key. All
// cryptography of the protocol runs in kanal.wasm (the Go SDK), which
// registers globalThis.kanalGo; this shell only renders and stores.
"use strict";

const T = {
  de: {
    skip: "Zum Inhalt springen", loading: "kanal wird geladen …", signupTitle: "Registrieren",
    signupIntro: "Ihre Nachrichten werden in diesem Browser verschlüsselt; die Schlüssel verlassen dieses Gerät nicht.",
    email: "E-Mail-Adresse", sendCode: "Code senden", verifyTitle: "E-Mail-Adresse bestätigen",
    code: "Code aus der E-Mail", confirm: "Bestätigen", enrolTitle: "Diesen Browser als Gerät einrichten",
    displayName: "Ihr Name", deviceName: "Name dieses Geräts", passphrase: "Passphrase (mindestens 8 Zeichen)",
    passHint: "Sie schützt die Schlüssel in diesem Browser. Niemand kann sie zurücksetzen.",
    enrol: "Gerät einrichten", unlockTitle: "Entsperren", passphraseShort: "Passphrase", unlock: "Entsperren",
    conversations: "Unterhaltungen", newPeer: "Neue Unterhaltung: Kennung einer Behörde (org_…) oder Person (acc_…)",
    open: "Öffnen", message: "Nachricht", send: "Senden", me: "Ich", codeSent: "Ein Code ist an {0} unterwegs.",
    enrolled: "Dieses Gerät ist eingerichtet.", working: "Bitte warten …", sent: "gesendet", delivered: "zugestellt", read: "gelesen",
    answeredBy: "{0} – beantwortet von {1}", verifiedOffice: "geprüfte Behörde", inboxOf: "Posteingang von {0}",
    forOrg: "{0} (an {1})", signedInAs: "Angemeldet als {0} ({1})", newMessage: "Neue Nachricht von {0}", error: "Fehler: {0}",
    convWith: "Unterhaltung mit {0}", noWebCrypto: "Dieser Browser kann keine Ed25519-Schlüssel in WebCrypto erzeugen.",
    langSwitch: "English",
  },
  en: {
    skip: "Skip to content", loading: "Loading kanal …", signupTitle: "Sign up",
    signupIntro: "Your messages are encrypted in this browser; the keys never leave this device.",
    email: "E-mail address", sendCode: "Send code", verifyTitle: "Confirm your e-mail address",
    code: "Code from the e-mail", confirm: "Confirm", enrolTitle: "Set up this browser as a device",
    displayName: "Your name", deviceName: "Name of this device", passphrase: "Passphrase (at least 8 characters)",
    passHint: "It protects the keys in this browser. Nobody can reset it.",
    enrol: "Set up device", unlockTitle: "Unlock", passphraseShort: "Passphrase", unlock: "Unlock",
    conversations: "Conversations", newPeer: "New conversation: id of an office (org_…) or a person (acc_…)",
    open: "Open", message: "Message", send: "Send", me: "Me", codeSent: "A code is on its way to {0}.",
    enrolled: "This device is set up.", working: "Please wait …", sent: "sent", delivered: "delivered", read: "read",
    answeredBy: "{0} – answered by {1}", verifiedOffice: "verified office", inboxOf: "Inbox of {0}",
    forOrg: "{0} (to {1})", signedInAs: "Signed in as {0} ({1})", newMessage: "New message from {0}", error: "Error: {0}",
    convWith: "Conversation with {0}", noWebCrypto: "This browser cannot make Ed25519 keys in WebCrypto.",
    langSwitch: "Deutsch",
  },
};

let lang = (navigator.language || "de").toLowerCase().startsWith("de") ? "de" : "en";
const $ = (id) => document.getElementById(id);
const t = (key, ...args) => (T[lang][key] || key).replace(/\{(\d)\}/g, (_, i) => args[i]);

function applyLang() {
  document.documentElement.lang = lang;
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  const b = $("lang");
  b.textContent = t("langSwitch");
  b.lang = lang === "de" ? "en" : "de";
  if (state.me) render();
  if (globalThis.participate) participate.render();
  if (globalThis.formsUI) formsUI.render();
}

// ---- IndexedDB: one object store of opaque records ----
let dbp;
function db() {
  if (!dbp) {
    dbp = new Promise((resolve, reject) => {
      const r = indexedDB.open("kanal", 1);
      r.onupgradeneeded = () => r.result.createObjectStore("kv");
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
  }
  return dbp;
}
async function tx(mode, fn) {
  const d = await db();
  return new Promise((resolve, reject) => {
    const x = d.transaction("kv", mode);
    const req = fn(x.objectStore("kv"));
    x.oncomplete = () => resolve(req ? req.result : undefined);
    x.onerror = () => reject(x.error);
    x.onabort = () => reject(x.error);
  });
}

// The device key: Ed25519, generated non-extractable, kept as a CryptoKey
// in IndexedDB (structured clone keeps it non-extractable).
async function newDeviceKey() {
  let kp;
  try {
    kp = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
  } catch (e) {
    throw new Error(t("noWebCrypto"));
  }
  await tx("readwrite", (s) => s.put(kp, "meta/device-key"));
}

globalThis.kanalShell = {
  ready: () => goReady(),
  get: (k) => tx("readonly", (s) => s.get(k)),
  put: (k, v) => tx("readwrite", (s) => { s.put(v, k); }),
  putAll: (batch) => tx("readwrite", (s) => { for (const [k, v] of batch) s.put(v, k); }),
  del: (k) => tx("readwrite", (s) => { s.delete(k); }),
  devicePublicKey: async () => {
    const kp = await tx("readonly", (s) => s.get("meta/device-key"));
    if (!kp) throw new Error("no device key");
    return new Uint8Array(await crypto.subtle.exportKey("raw", kp.publicKey));
  },
  sign: async (msg) => {
    const kp = await tx("readonly", (s) => s.get("meta/device-key"));
    return new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, kp.privateKey, msg));
  },
};

// ---- the Go SDK ----
let goReady;
const goLoaded = new Promise((r) => { goReady = r; });
async function startGo() {
  const go = new Go();
  const res = await WebAssembly.instantiateStreaming(fetch("/kanal.wasm"), go.importObject);
  go.run(res.instance);
  await goLoaded;
}

// ---- state and views ----
const state = { me: null, entries: [], current: null, orgNames: {} };

function show(view) {
  document.querySelectorAll("main > section").forEach((s) => { s.hidden = s.id !== view; });
  const h = document.querySelector("#" + view + " h1");
  if (h) h.focus();
}

function status(msg, isError) {
  const s = $("status");
  s.textContent = msg;
  s.className = isError ? "error" : "";
}

async function busy(form, fn) {
  const btn = form.querySelector("button");
  btn.disabled = true;
  status(t("working"));
  try {
    await fn();
  } catch (e) {
    status(t("error", e.message || String(e)), true);
  } finally {
    btn.disabled = false;
  }
}

function convKey(p) { return p.group || (p.org && p.account ? p.org + "/" + p.account : p.org || p.account); }

async function orgName(id) {
  if (!state.orgNames[id]) {
    try { state.orgNames[id] = await kanalGo.orgName(id); } catch (e) { state.orgNames[id] = id; }
  }
  return state.orgNames[id];
}

// peerName is how a conversation is named: the office, the citizen an
// agent answers (for the office), or the person.
function peerName(p) {
  if (p.group && globalThis.groups) return groups.label(p.group); // groups.js
  if (p.org && p.account) {
    const e = state.entries.find((x) => convKey(x.peer) === convKey(p) && x.from !== "me" && x.name);
    return t("forOrg", e ? e.name : p.account, state.orgNames[p.org] || p.org);
  }
  if (p.org) return state.orgNames[p.org] || p.org;
  if (p.account === state.me.account && globalThis.pair) return t("yourAccount");
  const e = state.entries.find((x) => convKey(x.peer) === convKey(p) && x.from !== "me" && x.name);
  return e ? e.name : p.account;
}

function render() {
  const convs = new Map();
  for (const e of state.entries) if (convKey(e.peer)) convs.set(convKey(e.peer), e.peer); // a notice from kanal has no peer
  if (state.current) convs.set(convKey(state.current), state.current);
  const ul = $("convs");
  ul.replaceChildren();
  for (const [k, p] of convs) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "conv";
    b.dataset.conv = k;
    b.textContent = peerName(p);
    if (state.current && convKey(state.current) === k) b.setAttribute("aria-current", "true");
    b.addEventListener("click", () => openConv(p));
    li.append(b);
    ul.append(li);
  }
  const me = state.me;
  let who = t("signedInAs", me.email, me.account);
  for (const o of me.orgs || []) who += " · " + t("inboxOf", o.name);
  $("whoami").textContent = who;
  if (globalThis.groups) groups.renderContacts();
  renderConv();
  if (globalThis.office) office.render();
}

function renderConv() {
  const sec = $("conv");
  if (!state.current) { sec.hidden = true; return; }
  sec.hidden = false;
  const k = convKey(state.current);
  $("h-conv").textContent = t("convWith", peerName(state.current));
  const ol = $("messages");
  ol.replaceChildren();
  for (const e of state.entries.filter((x) => convKey(x.peer) === k)) {
    if (e.notice && globalThis.notices) { ol.append(notices.line(e)); continue; } // a verified notice: a status line
    const li = document.createElement("li");
    li.dataset.id = e.id;
    const who = document.createElement("span");
    who.className = "who";
    if (e.from === "me") {
      li.className = "mine";
      who.textContent = t("me");
    } else if (e.org) {
      li.className = "office";
      who.textContent = t("answeredBy", e.org, e.name || e.from);
      const badge = document.createElement("span");
      badge.className = "meta";
      badge.textContent = " (" + t("verifiedOffice") + ")";
      who.append(badge);
    } else {
      who.textContent = e.name || e.from;
    }
    const text = document.createElement("p");
    text.className = "text";
    text.textContent = e.text;
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = new Date(e.at).toLocaleTimeString(lang) + (e.state ? " · " + t(e.state) : "");
    li.append(who, text, meta);
    if (globalThis.participate) participate.decorate(li, e); // a survey, an offer, a payment request
    if (globalThis.groups) groups.decorate(li, e); // a group change, a file
    if (globalThis.office) office.decorate(li, e); // sent offers and requests, contracts, payment status
    if (globalThis.formsUI) formsUI.decorate(li, e); // a form request, a submission to the office
    ol.append(li);
  }
  if (globalThis.groups) groups.renderConv(state.current);
}

async function openConv(p) {
  if (p.org) await orgName(p.org);
  state.current = p;
  render();
  if (globalThis.participate) participate.render();
  if (globalThis.notices) notices.read(p);
  if (globalThis.formsUI) formsUI.render();
  $("h-conv").focus();
}

function onIncoming(json) {
  const m = JSON.parse(json);
  if (m.error) { status(t("error", m.error), true); return; }
  if (m.payment) { // a payment's new status, from a notice kanal.wasm verified (office.js)
    state.entries.push(m.entry);
    render();
    document.dispatchEvent(new CustomEvent("kanal:payment", { detail: m }));
    return;
  }
  if (m.receipt) {
    for (const e of state.entries) if (e.from === "me" && m.ids.includes(e.id) && e.state !== "read") e.state = m.receipt;
    renderConv();
    return;
  }
  state.entries.push(m);
  document.dispatchEvent(new CustomEvent("kanal:incoming", { detail: m }));
  const finish = () => {
    render();
    status(m.notice && globalThis.notices ? notices.text(m) : t("newMessage", peerName(m.peer)));
  };
  if (m.peer.org) orgName(m.peer.org).then(finish); else finish();
}

async function enterApp(meJSON) {
  state.me = JSON.parse(meJSON);
  state.entries = JSON.parse(await kanalGo.history()) || [];
  for (const o of state.me.orgs || []) state.orgNames[o.org_id] = o.name;
  for (const e of state.entries) if (e.peer.org) await orgName(e.peer.org);
  await kanalGo.listen(onIncoming);
  render();
  show("view-app");
  status(t("enrolled"));
  document.dispatchEvent(new Event("kanal:entered"));
}

function wire() {
  $("lang").addEventListener("click", () => { lang = lang === "de" ? "en" : "de"; applyLang(); });
  $("form-signup").addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy(ev.target, async () => {
      await kanalGo.signup($("email").value);
      status(t("codeSent", $("email").value));
      show("view-verify");
    });
  });
  $("form-verify").addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy(ev.target, async () => {
      await kanalGo.verify($("code").value);
      status("");
      show("view-enrol");
    });
  });
  $("form-enrol").addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy(ev.target, async () => {
      await newDeviceKey();
      const me = await kanalGo.enrol($("pass").value, $("devname").value, $("display").value);
      $("pass").value = "";
      await enterApp(me);
    });
  });
  $("form-unlock").addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy(ev.target, async () => {
      const me = await kanalGo.unlock($("unlock-pass").value);
      $("unlock-pass").value = "";
      if (globalThis.pair && pair.resume(me)) return; // a pairing request waits for its certificate
      await enterApp(me);
    });
  });
  $("form-new").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const id = $("new-peer").value.trim();
    $("new-peer").value = "";
    openConv(id.startsWith("org_") ? { org: id } : { account: id });
  });
  $("form-send").addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy(ev.target, async () => {
      const e = JSON.parse(await kanalGo.send(JSON.stringify(state.current), $("text").value));
      $("text").value = "";
      state.entries.push(e);
      render();
      status(t("sent"));
      $("text").focus();
    });
  });
}

async function main() {
  wire();
  applyLang();
  $("devname").value = navigator.userAgentData ? "Browser " + navigator.userAgentData.platform : "Browser";
  await startGo();
  const salt = await kanalShell.get("meta/salt");
  show(salt ? "view-unlock" : "view-signup");
  // Time to interactive: from navigation start until the SDK runs and the
  // first form takes input (docs/benchmarks.md).
  document.body.dataset.readyMs = String(Math.round(performance.now()));
  document.body.dataset.ready = "1";
}

main().catch((e) => status(t("error", e.message || String(e)), true));
