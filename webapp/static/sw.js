// kanal's service worker (docs/web.md, docs/push.md). It does one thing:
// when kanald's wake-up arrives by web push, it shows a notification that
// says nothing a push service could not already see, and a click on it
// brings the app to the front, which connects, decrypts and opens the
// conversation. It caches nothing and holds no key: the messages are only
// in the app.
"use strict";

// The notification's only words. The push carries no content, no sender
// and no conversation, so there is nothing else it could say.
const WORDS = {
  de: { title: "kanal", body: "Neue Nachricht" },
  en: { title: "kanal", body: "New message" },
};

function words() {
  return (self.navigator.language || "de").toLowerCase().startsWith("de") ? WORDS.de : WORDS.en;
}

// isWake: kanald's payload is exactly {"v":1,"t":"wake"} (docs/push.md);
// anything else is not kanal's and shows nothing.
function isWake(data) {
  if (!data) return false;
  let msg;
  try { msg = data.json(); } catch (_) { return false; }
  return msg !== null && typeof msg === "object" && msg.v === 1 && msg.t === "wake";
}

self.addEventListener("install", (event) => { event.waitUntil(self.skipWaiting()); });
self.addEventListener("activate", (event) => { event.waitUntil(self.clients.claim()); });

self.addEventListener("push", (event) => {
  if (!isWake(event.data)) return;
  const w = words();
  event.waitUntil(self.registration.showNotification(w.title, {
    body: w.body,
    tag: "kanal-wake", // one notification, replaced, not stacked
    renotify: false,
    data: { open: "latest" },
  }));
});

// A click focuses a window of the app and asks it to open the newest
// conversation, or opens the app at /#latest, which does the same once it
// is unlocked (push.js).
self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(openApp());
});

async function openApp() {
  const wins = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  for (const c of wins) {
    if (!c.url.startsWith(self.location.origin + "/")) continue;
    c.postMessage({ kanal: "open-latest" });
    return c.focus();
  }
  return self.clients.openWindow("/#latest");
}
