// kanal web app: pairing this browser with a device of an existing
// account, and the status lines of verified notices and read receipts.
// The request, the certificate checks, the notices' signatures and the
// receipts all run in kanal.wasm (kanalGo.pairRequest, pairInstall,
// markRead); this file renders what they return.
"use strict";

Object.assign(T.de, {
  toPair: "Diesen Browser zu meinem Konto hinzufügen", pairTitle: "Diesen Browser zu Ihrem Konto hinzufügen",
  pairIntro: "Ein Gerät Ihres Kontos (kanal auf Ihrem Computer) bestätigt diesen Browser.",
  pairMake: "Anfrage erstellen", pairOutTitle: "Auf Ihrem Gerät bestätigen",
  pairFp: "Fingerabdruck des Schlüssels dieses Browsers:", pairRequest: "Anfrage (kopieren Sie sie auf Ihr Gerät)",
  pairHow: "Speichern Sie die Anfrage dort als Datei und führen Sie „kanal device approve --name Browser anfrage.pem“ aus. Vergleichen Sie den Fingerabdruck, den es ausgibt, mit dem hier.",
  pairCert: "Zertifikat, das Ihr Gerät ausgegeben hat", pairInstall: "Zertifikat installieren",
  pairMade: "Die Anfrage ist bereit. Fingerabdruck: {0}", paired: "Dieser Browser ist jetzt ein Gerät Ihres Kontos ({0}).",
  yourAccount: "Ihr Konto (Ihre Geräte)",
  nDeviceKeyThis: "Dieses Gerät hat einen neuen Schlüssel.",
  nDeviceKey: "Ihr Gerät {0} hat einen neuen Schlüssel. Waren Sie das nicht, sperren Sie das Gerät: jemand anderes hat Zugang zu Ihrem Konto.",
  nOrgErased: "{0} gehört nicht mehr zu {1}: das Konto wurde gelöscht.",
  nNewDeviceMine: "Ihr Konto hat ein neues Gerät: {0}. Ist es nicht Ihres, sperren Sie es.",
  nNewDevice: "{0} hat ein neues Gerät ({1}).",
  nKeyChange: "Die Sicherheitsnummer von {0} hat sich geändert (Gerät {1}).",
  nKeyChangeVerified: "Die Sicherheitsnummer von {0} hat sich geändert (Gerät {1}). Vergleichen Sie sie erneut, bevor Sie schreiben.",
  noticeLabel: "Hinweis von kanal",
  approveTitle: "Ein anderes Gerät bestätigen", approveRequest: "Anfrage des neuen Geräts (kanal device request)",
  approveCheck: "Anfrage prüfen", approveFp: "Fingerabdruck des neuen Geräts:",
  approveCompare: "Bestätigen Sie nur, wenn das neue Gerät denselben Fingerabdruck zeigt.", approveName: "Name des neuen Geräts",
  accountPasswordShort: "Kontopasswort", approveDo: "Gerät bestätigen",
  approveCert: "Zertifikat für das neue Gerät (kanal device install)", approved: "Gerät {0} bestätigt. Installieren Sie das Zertifikat darauf.",
});
Object.assign(T.en, {
  toPair: "Add this browser to my account", pairTitle: "Add this browser to your account",
  pairIntro: "A device of your account (kanal on your computer) approves this browser.",
  pairMake: "Make the request", pairOutTitle: "Approve it on your device",
  pairFp: "Fingerprint of this browser's key:", pairRequest: "Request (copy it to your device)",
  pairHow: "Save the request there as a file and run “kanal device approve --name Browser request.pem”. Compare the fingerprint it prints with the one here.",
  pairCert: "Certificate your device printed", pairInstall: "Install the certificate",
  pairMade: "The request is ready. Fingerprint: {0}", paired: "This browser is now a device of your account ({0}).",
  yourAccount: "Your account (your devices)",
  nDeviceKeyThis: "This device has a new key.",
  nDeviceKey: "Your device {0} has a new key. If that was not you, revoke the device: someone else has access to your account.",
  nOrgErased: "{0} is no longer a member of {1}: the account was erased.",
  nNewDeviceMine: "Your account has a new device: {0}. If it is not yours, revoke it.",
  nNewDevice: "{0} has a new device ({1}).",
  nKeyChange: "The safety number of {0} changed (device {1}).",
  nKeyChangeVerified: "The safety number of {0} changed (device {1}). Compare it again before you write.",
  noticeLabel: "Notice from kanal",
  approveTitle: "Approve another device", approveRequest: "The new device's request (kanal device request)",
  approveCheck: "Check the request", approveFp: "Fingerprint of the new device:",
  approveCompare: "Approve only if the new device shows the same fingerprint.", approveName: "Name of the new device",
  accountPasswordShort: "Account password", approveDo: "Approve the device",
  approveCert: "Certificate for the new device (kanal device install)", approved: "Device {0} approved. Install the certificate on it.",
});
applyLang(); // app.js translated the page before these strings were added


globalThis.pair = (() => {
  function showRequest(v) {
    $("form-pair").hidden = true;
    $("pair-out").hidden = false;
    $("pair-fp").textContent = v.fingerprint;
    $("pair-request").value = v.request;
    status(t("pairMade", v.fingerprint));
    $("h-pair-out").focus();
  }

  // resume is unlock's hook: a browser that made a request and has no
  // certificate yet shows the request again.
  function resume(json) {
    const v = JSON.parse(json);
    if (!v.pending) return false;
    show("view-pair");
    showRequest(v.pending);
    return true;
  }

  $("to-pair").addEventListener("click", () => { status(""); show("view-pair"); });
  $("form-pair").addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy(ev.target, async () => {
      await newDeviceKey();
      const v = JSON.parse(await kanalGo.pairRequest($("pair-pass").value));
      $("pair-pass").value = "";
      showRequest(v);
    });
  });
  $("form-pair-install").addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy(ev.target, async () => {
      const me = await kanalGo.pairInstall($("pair-cert").value);
      $("pair-cert").value = "";
      await enterApp(me);
      status(t("paired", state.me.device));
    });
  });

  // The reverse: this browser approves another device's request, as
  // kanal device approve does; the fingerprint is shown first.
  $("form-approve-check").addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy(ev.target, async () => {
      $("approve-fp").textContent = await kanalGo.requestFingerprint($("approve-request").value);
      $("form-approve").hidden = false;
      $("approve-out").hidden = true;
      status(t("approveFp") + " " + $("approve-fp").textContent);
      $("approve-name").focus();
    });
  });
  $("form-approve").addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy(ev.target, async () => {
      const r = JSON.parse(await kanalGo.approve($("approve-request").value, $("approve-name").value, $("approve-pass").value));
      $("approve-pass").value = "";
      $("form-approve").hidden = true;
      $("approve-out").hidden = false;
      $("approve-cert").value = r.certificate;
      status(t("approved", r.device));
      $("approve-cert").focus();
    });
  });
  return { resume };
})();

globalThis.notices = (() => {
  function nameOf(account) {
    const e = state.entries.find((x) => x.peer.account === account && !x.peer.org && x.from === account && x.name);
    return e ? e.name : account;
  }

  // text words a status line; only entries kanal.wasm made from a
  // verified notice carry e.notice.
  function text(e) {
    const n = e.notice;
    switch (e.kind) {
      case "notice.device-key": return n.this ? t("nDeviceKeyThis") : t("nDeviceKey", n.device);
      case "notice.org-erased": return t("nOrgErased", nameOf(n.account), state.orgNames[n.org] || n.org);
      case "notice.new-device":
        return n.account === state.me.account ? t("nNewDeviceMine", n.device) : t("nNewDevice", nameOf(n.account), n.device);
      case "notice.key-change": return t(n.verified ? "nKeyChangeVerified" : "nKeyChange", nameOf(n.account), n.device);
    }
    return e.text;
  }

  // line is the status line in the conversation: no sender, no bubble,
  // a plain sentence labelled as kanal's.
  function line(e) {
    const li = document.createElement("li");
    li.className = "notice";
    li.dataset.id = e.id;
    li.dataset.kind = e.kind;
    const label = document.createElement("span");
    label.className = "who";
    label.textContent = t("noticeLabel");
    const p = document.createElement("p");
    p.className = "text";
    p.textContent = text(e);
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = new Date(e.at).toLocaleTimeString(lang);
    li.append(label, p, meta);
    return li;
  }

  // read sends read receipts for what the open conversation shows.
  function read(p) {
    if (document.visibilityState !== "visible") return;
    if (!state.entries.some((e) => e.unread && convKey(e.peer) === convKey(p))) return;
    for (const e of state.entries) if (convKey(e.peer) === convKey(p)) e.unread = false;
    kanalGo.markRead(JSON.stringify(p)).catch(() => {}); // best effort, as delivery receipts
  }

  document.addEventListener("kanal:incoming", (ev) => {
    if (state.current && convKey(ev.detail.peer) === convKey(state.current)) read(state.current);
  });
  document.addEventListener("visibilitychange", () => { if (state.current) read(state.current); });
  return { text, line, read };
})();
