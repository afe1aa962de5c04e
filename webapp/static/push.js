// kanal web app: notifications by web push (docs/web.md, docs/push.md).
// It registers the service worker (sw.js), subscribes with kanald's VAPID
// key, registers the subscription with kanald through the SDK (which holds
// the session token), and opens the newest conversation when the app was
// opened from a notification. It runs after app.js and uses its state,
// t, status, busy and openConv.
"use strict";

Object.assign(T.de, {
  pushOn: "Mitteilungen einschalten", pushOff: "Mitteilungen ausschalten",
  pushIsOn: "Mitteilungen sind eingeschaltet. Sie zeigen nur „Neue Nachricht“, nie den Inhalt.",
  pushIsOff: "Mitteilungen sind ausgeschaltet.", pushDenied: "Der Browser erlaubt keine Mitteilungen für kanal.",
});
Object.assign(T.en, {
  pushOn: "Turn on notifications", pushOff: "Turn off notifications",
  pushIsOn: "Notifications are on. They only say “New message”, never what it says.",
  pushIsOff: "Notifications are off.", pushDenied: "The browser does not allow notifications for kanal.",
});
applyLang();

const push = {
  supported: "serviceWorker" in navigator && "PushManager" in globalThis && "Notification" in globalThis,
  reg: null,
  // land is set while the app, opened from a notification, should open
  // the conversation of the message that woke it.
  land: location.hash === "#latest",
};

function base64urlEncode(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function base64urlDecode(s) {
  const b = atob(s.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(b, (c) => c.charCodeAt(0));
}

async function vapidKey() {
  const res = await fetch("/v1/push/vapid-key");
  if (!res.ok) throw new Error("vapid-key: " + res.status);
  return (await res.json()).public_key;
}

function pushButton(on) {
  const f = $("form-push");
  f.hidden = false;
  const b = f.querySelector("button");
  b.dataset.i18n = on ? "pushOff" : "pushOn";
  b.textContent = t(b.dataset.i18n);
}

// subscribe subscribes with kanald's key (dropping a subscription made
// with another key) and registers the subscription with kanald.
async function subscribe() {
  const key = await vapidKey();
  let sub = await push.reg.pushManager.getSubscription();
  if (sub && base64urlEncode(sub.options.applicationServerKey) !== key) {
    await sub.unsubscribe();
    sub = null;
  }
  if (!sub) sub = await push.reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: base64urlDecode(key) });
  await kanalGo.pushSubscription("PUT", JSON.stringify(sub.toJSON()));
}

async function turnOn() {
  if (await Notification.requestPermission() !== "granted") throw new Error(t("pushDenied"));
  await subscribe();
  pushButton(true);
  status(t("pushIsOn"));
}

async function turnOff() {
  await kanalGo.pushSubscription("DELETE", "");
  const sub = await push.reg.pushManager.getSubscription();
  if (sub) await sub.unsubscribe();
  pushButton(false);
  status(t("pushIsOff"));
}

// landLatest opens the conversation of the newest message someone else
// sent: the push says nothing about which, so the app decides once it has
// decrypted what arrived.
function landLatest() {
  for (let i = state.entries.length - 1; i >= 0; i--) {
    const e = state.entries[i];
    if (e.from !== "me") { openConv(e.peer); return; }
  }
}

document.addEventListener("kanal:entered", async () => {
  if (push.land) {
    history.replaceState(null, "", "/");
    landLatest();
    setTimeout(() => { push.land = false; }, 30000); // the waking message may still be on its way
  }
  if (!push.supported || !push.reg) return;
  let on = false;
  try {
    // Registered again on every unlock: the browser may have replaced the
    // subscription since (pushsubscriptionchange), and only the page
    // holds a session to register it with.
    if (Notification.permission === "granted" && await push.reg.pushManager.getSubscription()) {
      await subscribe();
      on = true;
    }
  } catch (e) {
    status(t("error", e.message || String(e)), true);
  }
  pushButton(on);
});

document.addEventListener("kanal:incoming", (ev) => {
  if (push.land && ev.detail.from !== "me") {
    push.land = false;
    openConv(ev.detail.peer);
  }
});

async function startPush() {
  $("form-push").addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy(ev.target, () => ($("form-push").querySelector("button").dataset.i18n === "pushOff" ? turnOff() : turnOn()));
  });
  if (!push.supported) return;
  navigator.serviceWorker.addEventListener("message", (ev) => {
    if (ev.origin !== location.origin || !ev.data || ev.data.kanal !== "open-latest") return;
    if (state.me) landLatest(); else push.land = true;
  });
  push.reg = await navigator.serviceWorker.register("/sw.js", { scope: "/" });
}

startPush().catch((e) => status(t("error", e.message || String(e)), true));
