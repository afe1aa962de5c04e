package webapp_test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/kanal-server/kanal/internal/kanaldtest"
)

// TestAttackBrowserStore: the adversary holds the browser's profile on
// disk (the IndexedDB records) but not the passphrase. A wrong passphrase
// opens nothing, and records moved between names (each value put under
// another record's name) are refused, not read: each value is bound to its
// name by AES-GCM's associated data.
func TestAttackBrowserStore(t *testing.T) {
	chromium(t)
	srv := kanaldtest.Start(t, kanald)
	br := newTab(t, "owner")
	br.signUp(srv, t.TempDir(), "owner@example.org", "Otto Owner", "owner passphrase")

	unlockFails := func(what, pass string) {
		t.Helper()
		br.do("reload", chromedp.Reload(), visible("#unlock-pass"))
		br.do(what, typeEnter("#unlock-pass", pass), visible("#status.error"))
		status := run(br, "status", chromedp.Text(chromedp.CSS("#status")))
		if !strings.Contains(status, "wrong passphrase") {
			t.Fatalf("%s: status %q", what, status)
		}
		if run(br, "app hidden?", chromedp.Evaluate[bool](`document.getElementById("view-app").hidden`)) != true {
			t.Fatalf("%s: the app opened", what)
		}
	}
	unlockFails("a wrong passphrase", "not the passphrase")

	// The records are there, and none shows a name or a plaintext.
	dump := run(br, "read the records", chromedp.Evaluate[string](`new Promise((resolve, reject) => {
		const r = indexedDB.open("kanal");
		r.onsuccess = () => {
			const x = r.result.transaction("kv", "readonly").objectStore("kv");
			const keys = x.getAllKeys(), vals = x.getAll();
			vals.onsuccess = () => resolve(JSON.stringify({keys: keys.result, text: vals.result.map(v => v instanceof Uint8Array ? new TextDecoder().decode(v) : "").join("")}));
		};
		r.onerror = () => reject(r.error);
	})`, chromedp.EvalAwaitPromise))
	if n := strings.Count(dump, `"s/`); n < 3 {
		t.Fatalf("only %d encrypted records: %.300s", n, dump)
	}
	for _, leak := range []string{"app/state", "e2e/", "owner@example.org", "BEGIN CERTIFICATE", "Otto Owner"} {
		if strings.Contains(dump, leak) {
			t.Fatalf("IndexedDB shows %q", leak)
		}
	}

	// Rotate the encrypted records: each value moves to the next name.
	run(br, "rotate the records", chromedp.Evaluate[chromedp.Void](`new Promise((resolve, reject) => {
		const r = indexedDB.open("kanal");
		r.onsuccess = () => {
			const tx = r.result.transaction("kv", "readwrite"), s = tx.objectStore("kv");
			const keys = s.getAllKeys(), vals = s.getAll();
			vals.onsuccess = () => {
				const idx = keys.result.map((k, i) => [k, i]).filter(([k]) => k.startsWith("s/")).map(([, i]) => i);
				idx.forEach((i, j) => s.put(vals.result[idx[(j + 1) % idx.length]], keys.result[i]));
			};
			tx.oncomplete = () => resolve();
			tx.onerror = () => reject(tx.error);
		};
	})`, chromedp.EvalAwaitPromise))
	unlockFails("moved records", "owner passphrase")
}
