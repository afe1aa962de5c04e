// kanal web app: groups and attachments. Creating a group, accepting an
// invitation, leaving, sending a file and checking one that arrived all
// run in kanal.wasm (the Go SDK: kanalGo.createGroup, acceptGroup,
// declineGroup, leaveGroup, attach, download); this file renders what it
// returns. A received file is never rendered as HTML: it is offered for
// download as application/octet-stream, and only a PNG, JPEG, GIF or
// WebP image is also shown, as an <img>.
"use strict";

Object.assign(T.de, {
  newGroup: "Neue Gruppe", groupName: "Name der Gruppe", groupContacts: "Mitglieder aus Ihren Unterhaltungen",
  groupAccounts: "Weitere Mitglieder: Kennungen (acc_…), durch Leerzeichen getrennt", createGroup: "Gruppe anlegen",
  groupCreated: "Die Gruppe „{0}“ ist angelegt; die Eingeladenen werden Mitglied, sobald sie annehmen.",
  groupLabel: "Gruppe „{0}“", groupLabelWith: "Gruppe „{0}“ ({1})", groupUnnamed: "Gruppe ohne Namen",
  groupInvitation: "Einladung in eine Gruppe von {0}", members: "Mitglieder", admin: "Admin", member: "Mitglied",
  you: "Sie", invitedBy: "{0} hat Sie in diese Gruppe eingeladen. Nachrichten erreichen Sie erst, wenn Sie annehmen.",
  accept: "Einladung annehmen", decline: "Einladung ablehnen", leave: "Gruppe verlassen", joined: "Sie sind Mitglied der Gruppe.",
  declined: "Sie haben die Einladung abgelehnt.", leftGroup: "Sie haben die Gruppe verlassen.",
  notMember: "Sie sind nicht (mehr) Mitglied dieser Gruppe.", addMember: "Mitglied einladen: Kennung (acc_…)", invite: "Einladen",
  invitedOk: "{0} ist eingeladen.",
  gc_created: "{0} hat die Gruppe angelegt.", gc_added: "{1} ist jetzt Mitglied (eingeladen von {0}).", gc_removed: "{0} hat {1} aus der Gruppe entfernt.",
  gc_left: "{1} hat die Gruppe verlassen.", gc_member: "{1} ist Mitglied.", gc_role: "{0} hat {1} zur Rolle „{2}“ gemacht.",
  gc_invited: "{0} hat {1} eingeladen.", gc_declined: "{1} hat die Einladung abgelehnt.", gc_uninvited: "{0} hat die Einladung von {1} zurückgezogen.",
  groupNamed: "{0} hat die Gruppe „{1}“ genannt.",
  file: "Datei", sendFile: "Datei senden", fileHint: "Höchstens {0}. Die Datei wird in diesem Browser verschlüsselt.",
  fileTooLarge: "„{0}“ ist {1} groß; kanal sendet Dateien bis {2}. Es wurde nichts hochgeladen.", fileEmpty: "„{0}“ ist leer.",
  fileSent: "Datei gesendet.", fileMsg: "Datei „{0}“ ({1}, {2})", download: "„{0}“ herunterladen und prüfen",
  save: "„{0}“ speichern ({1})", imageOf: "Bild „{0}“", downloaded: "Geprüft und entschlüsselt: „{0}“ ist bereit zum Speichern.",
  mismatch: "„{0}“ passt nicht zur Nachricht des Absenders: sie wurde unterwegs verändert. Es wird nichts angeboten.",
  membersPending: "Dieses Gerät kennt die Mitglieder der Gruppe noch nicht ganz; bitte gleich noch einmal versuchen.",
  groupNameBad: "Der Name der Gruppe braucht 1 bis 200 Zeichen in einer Zeile.",
});
Object.assign(T.en, {
  newGroup: "New group", groupName: "Name of the group", groupContacts: "Members from your conversations",
  groupAccounts: "More members: ids (acc_…), separated by spaces", createGroup: "Create group",
  groupCreated: "The group “{0}” is created; those invited become members once they accept.",
  groupLabel: "Group “{0}”", groupLabelWith: "Group “{0}” ({1})", groupUnnamed: "Unnamed group",
  groupInvitation: "Invitation to a group from {0}", members: "Members", admin: "admin", member: "member",
  you: "you", invitedBy: "{0} invited you to this group. Its messages reach you only once you accept.",
  accept: "Accept the invitation", decline: "Decline the invitation", leave: "Leave the group", joined: "You are a member of the group.",
  declined: "You declined the invitation.", leftGroup: "You left the group.",
  notMember: "You are not (or no longer) a member of this group.", addMember: "Invite a member: id (acc_…)", invite: "Invite",
  invitedOk: "{0} is invited.",
  gc_created: "{0} created the group.", gc_added: "{1} is now a member (invited by {0}).", gc_removed: "{0} removed {1} from the group.",
  gc_left: "{1} left the group.", gc_member: "{1} is a member.", gc_role: "{0} made {1} {2}.",
  gc_invited: "{0} invited {1}.", gc_declined: "{1} declined the invitation.", gc_uninvited: "{0} withdrew the invitation of {1}.",
  groupNamed: "{0} named the group “{1}”.",
  file: "File", sendFile: "Send file", fileHint: "At most {0}. The file is encrypted in this browser.",
  fileTooLarge: "“{0}” is {1}; kanal sends files of at most {2}. Nothing was uploaded.", fileEmpty: "“{0}” is empty.",
  fileSent: "File sent.", fileMsg: "File “{0}” ({1}, {2})", download: "Download and check “{0}”",
  save: "Save “{0}” ({1})", imageOf: "Picture “{0}”", downloaded: "Checked and decrypted: “{0}” is ready to save.",
  mismatch: "“{0}” does not match the sender's message: it was changed on the way. Nothing is offered.",
  membersPending: "This device does not know all of the group's members yet; please try again in a moment.",
  groupNameBad: "The group's name needs 1 to 200 characters on one line.",
});

const groups = (() => {
  let list = {}; // group id → the view kanalGo.groups() returns
  let limit = 0;
  const files = new Map(); // entry key → {url, blob, image}: what a download offers
  const inline = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);
  const maxInline = 5 * 1000 * 1000;

  const el = (tag, props, ...children) => {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "text") n.textContent = v;
      else if (k === "i18n") { n.dataset.i18n = v; n.textContent = t(v); }
      else n.setAttribute(k, v);
    }
    n.append(...children.filter((c) => c !== null && c !== undefined));
    return n;
  };
  const size = (n) => n < 1000 ? n + " B" : n < 1e6 ? (n / 1000).toLocaleString(lang, { maximumFractionDigits: 1 }) + " kB"
    : (n / 1e6).toLocaleString(lang, { maximumFractionDigits: 1 }) + " MB";
  const fileKey = (e) => e.from + "/" + e.id;
  const sentence = (s) => s.charAt(0).toLocaleUpperCase(lang) + s.slice(1);
  const errText = (e, name) => {
    const m = e.message || String(e);
    if (m.includes("attachment-mismatch")) return t("mismatch", name);
    if (m.includes("file-too-large")) return t("fileTooLarge", name, "", size(limit));
    if (m.includes("group-name")) return t("groupNameBad");
    if (m.includes("does not belong in this conversation")) return t("membersPending");
    return m;
  };

  // refresh reads the groups again and says whether anything changed.
  async function refresh() {
    const json = await kanalGo.groups();
    const next = {};
    for (const g of JSON.parse(json)) next[g.id] = g;
    const changed = json !== refresh.last;
    refresh.last = json;
    list = next;
    return changed;
  }

  // nameOf names an account: this one, a group member or a sender by
  // their profile name, else by id.
  function nameOf(acc) {
    if (state.me && acc === state.me.account) return t("you");
    for (const g of Object.values(list)) for (const m of g.members) if (m.account === acc && m.name) return m.name;
    const e = state.entries.find((x) => x.from === acc && x.name);
    return e ? e.name : acc;
  }

  function label(id) {
    const g = list[id];
    if (!g) return t("groupUnnamed");
    if (!g.name && g.state === "invited") return t("groupInvitation", nameOf(g.inviter));
    const others = g.members.filter((m) => !m.me).map((m) => m.name || m.account);
    const title = g.name || t("groupUnnamed");
    return others.length ? t("groupLabelWith", title, others.join(", ")) : t("groupLabel", title);
  }

  // contacts are the people this account has a conversation with.
  function contacts() {
    const out = new Map();
    for (const e of state.entries) {
      const p = e.peer;
      if (p.account && !p.org && !p.group && p.account !== state.me.account) out.set(p.account, nameOf(p.account));
    }
    return out;
  }

  function installForms() {
    if ($("form-group")) return;
    const box = el("fieldset", { id: "group-contacts", hidden: "" }, el("legend", { i18n: "groupContacts" }));
    const form = el("form", { id: "form-group" },
      el("h2", { id: "h-newgroup", i18n: "newGroup" }),
      el("label", { for: "group-name", i18n: "groupName" }),
      el("input", { id: "group-name", name: "name", required: "", maxlength: "200" }),
      box,
      el("label", { for: "group-accounts", i18n: "groupAccounts" }),
      el("input", { id: "group-accounts", name: "accounts" }),
      el("button", { type: "submit", i18n: "createGroup" }));
    $("form-new").after(form);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      busy(form, async () => {
        const accounts = [...form.querySelectorAll("#group-contacts input:checked")].map((c) => c.value)
          .concat($("group-accounts").value.split(/[\s,]+/).filter((x) => x));
        const name = $("group-name").value.trim();
        let id;
        try {
          id = await kanalGo.createGroup(name, JSON.stringify(accounts));
        } catch (e) { throw new Error(errText(e, name)); }
        $("group-name").value = "";
        $("group-accounts").value = "";
        form.querySelectorAll("#group-contacts input:checked").forEach((c) => { c.checked = false; });
        await refresh();
        await openConv({ group: id });
        status(t("groupCreated", name));
      });
    });

    const attach = el("form", { id: "form-attach" },
      el("label", { for: "file", i18n: "file" }),
      el("input", { id: "file", name: "file", type: "file", required: "", "aria-describedby": "file-hint" }),
      el("p", { id: "file-hint", class: "hint" }),
      el("button", { type: "submit", i18n: "sendFile" }));
    $("form-send").after(attach);
    attach.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const f = $("file").files[0];
      if (!f) return;
      // The limit is checked before a byte is read or uploaded.
      if (f.size > limit) { status(t("fileTooLarge", f.name, size(f.size), size(limit)), true); return; }
      if (f.size === 0) { status(t("fileEmpty", f.name), true); return; }
      busy(attach, async () => {
        const bytes = new Uint8Array(await f.arrayBuffer());
        let e;
        try {
          e = JSON.parse(await kanalGo.attach(JSON.stringify(state.current), f.name, f.type, bytes));
        } catch (err) { throw new Error(errText(err, f.name)); }
        $("file").value = "";
        state.entries.push(e);
        render();
        status(t("fileSent"));
        $("file").focus();
      });
    });
  }

  function renderContacts() {
    const box = $("group-contacts");
    if (!box) return;
    const cs = contacts();
    const checked = new Set([...box.querySelectorAll("input:checked")].map((c) => c.value));
    box.replaceChildren(el("legend", { i18n: "groupContacts" }));
    let i = 0;
    for (const [acc, name] of cs) {
      const id = "group-contact-" + i++;
      const cb = el("input", { type: "checkbox", id, value: acc });
      cb.checked = checked.has(acc);
      box.append(el("div", { class: "check" }, cb, el("label", { for: id, text: name })));
    }
    box.hidden = cs.size === 0;
  }

  // panel shows a group's members and what this account can do in it.
  function renderPanel(p) {
    let sec = $("group-panel");
    const g = p && p.group ? list[p.group] : null;
    if (!g) {
      if (sec) sec.remove();
      $("form-send").hidden = false;
      $("form-attach").hidden = false;
      return;
    }
    if (!sec) {
      sec = el("section", { id: "group-panel", "aria-labelledby": "h-members" });
      $("h-conv").after(sec);
    }
    const ul = el("ul", { id: "group-members" });
    for (const m of g.members) {
      ul.append(el("li", { text: (m.me ? t("you") : (m.name || m.account)) + " (" + t(m.role === "admin" ? "admin" : "member") + ")" }));
    }
    sec.replaceChildren(el("h3", { id: "h-members", i18n: "members" }), ul);
    const member = g.state === "member";
    $("form-send").hidden = !member;
    $("form-attach").hidden = !member;
    if (g.state === "invited") {
      sec.append(el("p", { text: t("invitedBy", nameOf(g.inviter)) }));
      const acc = el("button", { type: "button", id: "group-accept", i18n: "accept" });
      const dec = el("button", { type: "button", id: "group-decline", i18n: "decline" });
      acc.addEventListener("click", () => act(g.id, kanalGo.acceptGroup, "joined", "#text"));
      dec.addEventListener("click", () => act(g.id, kanalGo.declineGroup, "declined", "#h-conv"));
      sec.append(acc, " ", dec);
    } else if (member) {
      if (g.role === "admin") {
        const f = el("form", { id: "form-invite" },
          el("label", { for: "invite-account", i18n: "addMember" }),
          el("input", { id: "invite-account", required: "", pattern: "acc_[A-Za-z0-9_\\-]+" }),
          el("button", { type: "submit", i18n: "invite" }));
        f.addEventListener("submit", (ev) => {
          ev.preventDefault();
          busy(f, async () => {
            const acc = $("invite-account").value.trim();
            await kanalGo.addGroupMember(g.id, acc);
            status(t("invitedOk", nameOf(acc)));
          });
        });
        sec.append(f);
      }
      const leave = el("button", { type: "button", id: "group-leave", i18n: "leave" });
      leave.addEventListener("click", () => act(g.id, kanalGo.leaveGroup, "leftGroup", "#h-conv"));
      sec.append(leave);
    } else {
      sec.append(el("p", { text: t("notMember") }));
    }
  }

  async function act(id, fn, done, focus) {
    status(t("working"));
    try {
      await fn(id);
      await refresh();
      render();
      status(t(done));
      document.querySelector(focus).focus();
    } catch (e) {
      status(t("error", e.message || String(e)), true);
    }
  }

  // decorate says what a group change, a group's name or a file is, and
  // offers a file's download.
  function decorate(li, e) {
    const text = li.querySelector(".text");
    if (e.kind === "group.change" && e.body) {
      const b = e.body;
      li.classList.add("notice");
      text.textContent = sentence(t("gc_" + b.op, nameOf(b.by), nameOf(b.account_id), b.role ? t(b.role) : ""));
    } else if (e.kind === "group.name" && e.body) {
      text.textContent = sentence(t("groupNamed", e.from === "me" ? t("you") : nameOf(e.from), e.body.name));
    } else if (e.kind === "attachment" && e.file) {
      const f = e.file;
      text.textContent = t("fileMsg", f.name, size(f.size), f.mime);
      const got = files.get(fileKey(e));
      if (got) {
        li.append(offer(e, got));
        return;
      }
      const btn = el("button", { type: "button", class: "download", text: t("download", f.name) });
      btn.dataset.file = e.id;
      btn.addEventListener("click", () => download(e, li, btn));
      li.append(btn);
    }
  }

  function offer(e, got) {
    const div = el("div", { class: "file" });
    if (got.image) div.append(el("img", { src: got.image, alt: t("imageOf", e.file.name) }));
    div.append(el("a", { href: got.url, download: e.file.name, text: t("save", e.file.name, size(e.file.size)) }));
    return div;
  }

  async function download(e, li, btn) {
    btn.disabled = true;
    status(t("working"));
    try {
      const bytes = await kanalGo.download(e.id, e.from);
      // The sender's type is not trusted for the download: the browser
      // is given bytes to save, never a page to render.
      const blob = new Blob([bytes], { type: "application/octet-stream" });
      const got = { url: URL.createObjectURL(blob), blob };
      if (inline.has(e.file.mime) && bytes.length <= maxInline) got.image = "data:" + e.file.mime + ";base64," + base64(bytes);
      files.set(fileKey(e), got);
      const div = offer(e, got);
      btn.replaceWith(div);
      status(t("downloaded", e.file.name));
      div.querySelector("a").focus();
    } catch (err) {
      btn.disabled = false;
      status(errText(err, e.file.name), true);
      btn.focus();
    }
  }

  function base64(bytes) {
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(s);
  }

  function renderConv(p) {
    if (!$("form-attach")) return;
    renderPanel(p);
    $("file-hint").textContent = t("fileHint", size(limit));
  }

  document.addEventListener("kanal:entered", async () => {
    limit = await kanalGo.attachLimit();
    await refresh();
    installForms();
    render();
  });
  document.addEventListener("kanal:incoming", async (ev) => {
    // A group's change or name, or a member's first message, which
    // brings the member's profile name.
    if (ev.detail.peer && ev.detail.peer.group && await refresh()) render();
  });

  return {
    label, decorate, renderConv, renderContacts, refresh,
    // fileOf is the Blob a download offers for the message (from, id).
    fileOf: (from, id) => (files.get(from + "/" + id) || {}).blob,
  };
})();
globalThis.groups = groups;
