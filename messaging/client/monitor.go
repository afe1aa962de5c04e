package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/kanal-server/kanal/internal/apiclient"
	"github.com/kanal-server/kanal/keys/transparency"
)

// The monitor. A device watches its own account in the transparency log,
// so that a device the server mints for the account, or an identity key
// it publishes in a device's name, cannot stay hidden from the account's
// owner: whatever the server shows other people about this account is in
// the log (they refuse bindings without a proof), and the log is one
// history for everyone (consistency proofs, witnesses).
//
// Monitor polls: it brings the stored checkpoint up to date (UpdateLog:
// signed by the pinned log key, consistent with the one before), reads
// every entry after the last one it read, and checks each against that
// checkpoint through the log's hash tiles (tlog.TileHashReader), so the
// server cannot hide, change or reorder an entry. An entry about this
// account raises an Alert when it names
//
//   - a device this device does not know (AlertForeignDevice): not itself,
//     not one it enrolled (ExpectDevice), not one the account had before
//     this device was enrolled, not one the user acknowledged;
//   - an identity key for this device that is not its own
//     (AlertForeignKey);
//   - an identity key for another known device of the account that differs
//     from the one the monitor saw for it before (AlertKeyChanged).
//
// An entry is about this account if it names the account (version 1) or
// the commitment to it under the account's log salt (version 2), the salt
// pinned from the directory's device list (Devices) on the first poll.
// A version 2 entry about a device this device knows under another
// commitment raises AlertForeignCommitment: the server showed this
// monitor a salt other than the one it logs the account under.
//
// Alerts stay in the Store until AckAlerts; acknowledging a foreign device
// makes it known. A log that does not verify is refused (the error wraps
// ErrLog) and nothing of the poll is kept.
//
// The first poll starts at this device's own enrolment entry (from the
// directory's verified list of the account's devices), not at entry 0: the
// account's devices listed before it are known, and everything logged
// after it is read. Entries before a device's enrolment are its
// enroller's to watch.

// AlertKind says what an Alert found.
type AlertKind string

// The kinds of alerts.
const (
	AlertForeignDevice AlertKind = "foreign-device" // a device of this account that this device does not know
	AlertForeignKey    AlertKind = "foreign-key"    // an identity key for this device that it did not publish
	AlertKeyChanged    AlertKind = "key-changed"    // another identity key for a known device of this account
	// AlertForeignCommitment: a known device of this account logged under
	// a commitment that is not this account's under its pinned salt.
	AlertForeignCommitment AlertKind = "foreign-commitment"
)

// Alert is something the log shows about this account that this device
// did not do or know of.
type Alert struct {
	Kind     AlertKind `json:"kind"`
	DeviceID string    `json:"device"`
	Index    int64     `json:"index"` // the log entry
	Entry    string    `json:"entry"` // its kind
	LoggedAt time.Time `json:"logged_at"`
}

func (a Alert) String() string {
	when := a.LoggedAt.UTC().Format(time.RFC3339)
	switch a.Kind {
	case AlertForeignDevice:
		return fmt.Sprintf("a device you do not know, %s, was added to your account (log entry %d, %s)", a.DeviceID, a.Index, when)
	case AlertForeignKey:
		return fmt.Sprintf("an identity key this device did not publish was logged for it, %s (log entry %d, %s)", a.DeviceID, a.Index, when)
	case AlertKeyChanged:
		return fmt.Sprintf("your device %s has a new identity key (log entry %d, %s)", a.DeviceID, a.Index, when)
	case AlertForeignCommitment:
		return fmt.Sprintf("your device %s was logged under another account than yours (log entry %d, %s)", a.DeviceID, a.Index, when)
	}
	return fmt.Sprintf("%s: device %s (log entry %d, %s)", a.Kind, a.DeviceID, a.Index, when)
}

// monitorState is what the monitor keeps in the Store.
type monitorState struct {
	Started bool              `json:"started"` // a first poll chose where to start
	Next    int64             `json:"next"`    // the next entry to read
	Known   []string          `json:"known"`   // this account's devices this device knows
	Keys    map[string][]byte `json:"keys"`    // identity keys seen, by device
	Alerts  []Alert           `json:"alerts"`  // not yet acknowledged
}

const nameMonitor = "monitor/state"

func loadMonitor(s Store) (*monitorState, error) {
	m := &monitorState{Keys: map[string][]byte{}}
	b, err := s.Get(nameMonitor)
	if errors.Is(err, ErrNotFound) {
		return m, nil
	} else if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("messaging/client: stored monitor state: %w", err)
	}
	if m.Keys == nil {
		m.Keys = map[string][]byte{}
	}
	return m, nil
}

func putMonitor(s Store, m *monitorState) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return s.Put(nameMonitor, b)
}

// PendingAlerts returns the alerts the monitor keeps in s that were not
// acknowledged, without a Client or the network (the CLI shows them on
// every command).
func PendingAlerts(s Store) ([]Alert, error) {
	m, err := loadMonitor(s)
	if err != nil {
		return nil, err
	}
	return m.Alerts, nil
}

// ExpectDevice tells the monitor keeping its state in s that device is
// one of this account's, enrolled by this device (or known to the user
// otherwise): its entries raise no alert.
func ExpectDevice(s Store, device string) error {
	m, err := loadMonitor(s)
	if err != nil {
		return err
	}
	if !slices.Contains(m.Known, device) {
		m.Known = append(m.Known, device)
	}
	return putMonitor(s, m)
}

// Alerts returns the monitor's alerts that were not acknowledged.
func (c *Client) Alerts() ([]Alert, error) {
	c.monitorMu.Lock()
	defer c.monitorMu.Unlock()
	return PendingAlerts(c.store)
}

// ExpectDevice is the package's ExpectDevice on the Client's Store.
func (c *Client) ExpectDevice(device string) error {
	c.monitorMu.Lock()
	defer c.monitorMu.Unlock()
	return ExpectDevice(c.store, device)
}

// AckAlerts acknowledges every alert: a foreign device becomes a known
// one, a key the current one for its device. It returns how many there
// were.
func (c *Client) AckAlerts() (int, error) {
	c.monitorMu.Lock()
	defer c.monitorMu.Unlock()
	return AcknowledgeAlerts(c.store)
}

// AcknowledgeAlerts is AckAlerts on the monitor state kept in s, without
// a Client.
func AcknowledgeAlerts(s Store) (int, error) {
	m, err := loadMonitor(s)
	if err != nil {
		return 0, err
	}
	n := len(m.Alerts)
	for _, a := range m.Alerts {
		if a.Kind == AlertForeignDevice && !slices.Contains(m.Known, a.DeviceID) {
			m.Known = append(m.Known, a.DeviceID)
		}
	}
	m.Alerts = nil
	return n, putMonitor(s, m)
}

// Monitor polls the log once (see above) and returns the alerts it
// raised; each is also passed to Options.OnAlert. An error leaves the
// stored state as it was; one about the log wraps ErrLog.
func (c *Client) Monitor(ctx context.Context) ([]Alert, error) {
	c.monitorMu.Lock()
	defer c.monitorMu.Unlock()
	m, err := loadMonitor(c.store)
	if err != nil {
		return nil, err
	}
	if !m.Started {
		// Where to start: this device's enrolment entry, as the
		// directory's verified device list shows it; the account's
		// devices logged before it are known.
		start, known, err := c.monitorStart(ctx)
		if err != nil {
			return nil, err
		}
		m.Next = start
		for _, d := range append(known, c.device) {
			if !slices.Contains(m.Known, d) {
				m.Known = append(m.Known, d)
			}
		}
	}
	cp, err := c.UpdateLog(ctx)
	if err != nil {
		return nil, fmt.Errorf("messaging/client: monitor: %w", err)
	}
	if m.Next > cp.Size {
		return nil, logErr(fmt.Errorf("the monitor read up to entry %d, the log's checkpoint has %d", m.Next, cp.Size))
	}
	own, err := c.IdentityPublic()
	if err != nil {
		return nil, err
	}
	ownKey, err := own.MarshalBinary()
	if err != nil {
		return nil, err
	}
	salt, err := c.monitorSalt(ctx)
	if err != nil {
		return nil, err
	}
	accountLine := []byte("\naccount " + c.account + "\n")
	s, _ := transparency.SaltOf(salt)
	commitLine := []byte("\ncommitment " + transparency.AccountCommitment(s, c.account).String() + "\n")
	v2 := []byte("kanal-log v2\n")
	hr := tlog.TileHashReader(cp.Tree(), &tileFetcher{ctx: ctx, c: c, cache: map[string][]byte{}})
	var raised []Alert
	for start := m.Next; start < cp.Size; {
		count := min(cp.Size-start, MonitorBatch)
		es, err := c.logEntries(ctx, start, count)
		if err != nil {
			return nil, err
		}
		idx := make([]int64, len(es))
		for i := range es {
			idx[i] = tlog.StoredHashIndex(0, start+int64(i))
		}
		hs, err := hr.ReadHashes(idx)
		if err != nil {
			return nil, logErr(fmt.Errorf("entries %d to %d: %w", start, start+count, err))
		}
		for i, le := range es {
			if transparency.LeafHash(le.Data) != hs[i] {
				return nil, logErr(fmt.Errorf("%w: entry %d is not the one the checkpoint of size %d commits to", transparency.ErrInclusion, le.Index, cp.Size))
			}
			// An entry is parsed only if it names this account: its
			// canonical form has the line "account <id>" (version 1) or
			// "commitment <hex>" (version 2) — or if it is a version 2
			// entry about a device this device knows (entries are checked
			// by hash whatever they say).
			ours := bytes.Contains(le.Data, accountLine) || bytes.Contains(le.Data, commitLine)
			if !ours && !(bytes.HasPrefix(le.Data, v2) && slices.Contains(m.Known, deviceLine(le.Data))) {
				continue
			}
			e, err := transparency.ParseEntry(le.Data)
			if err != nil {
				return nil, logErr(fmt.Errorf("entry %d: %w", le.Index, err))
			}
			if e.NamesAccount(c.account, salt) {
				raised = append(raised, m.check(le.Index, e, c.device, ownKey)...)
			} else if e.Version == transparency.V2 && e.Commitment != (transparency.Commitment{}) && slices.Contains(m.Known, e.Device) {
				raised = append(raised, m.foreignCommitment(le.Index, e)...)
			}
		}
		start += int64(len(es))
	}
	// Nothing new: nothing to write (a write of the CLI's key store costs
	// a key derivation).
	if !m.Started || m.Next != cp.Size || len(raised) > 0 {
		m.Started, m.Next = true, cp.Size
		if err := putMonitor(c.store, m); err != nil {
			return nil, err
		}
	}
	if c.onAlert != nil {
		for _, a := range raised {
			c.onAlert(a)
		}
	}
	return raised, nil
}

// check applies the monitor's rules to entry e (of this account) at
// index, adds the alerts it raises to m.Alerts and returns them; it
// records the keys it sees.
func (m *monitorState) check(index int64, e *transparency.Entry, self string, ownKey []byte) []Alert {
	a := Alert{DeviceID: e.Device, Index: index, Entry: string(e.Kind), LoggedAt: time.Unix(e.Time, 0).UTC()}
	switch {
	case !slices.Contains(m.Known, e.Device):
		if e.Kind == transparency.KindDeviceRevoked {
			return nil // the end of a device is no threat
		}
		for _, old := range m.Alerts {
			if old.Kind == AlertForeignDevice && old.DeviceID == e.Device {
				return nil // told already; its key entries add nothing
			}
		}
		a.Kind = AlertForeignDevice
	case e.Kind != transparency.KindIdentityKey:
		return nil
	case e.Device == self:
		if bytes.Equal(e.Key, ownKey) {
			return nil
		}
		a.Kind = AlertForeignKey
	default:
		old, seen := m.Keys[e.Device]
		m.Keys[e.Device] = e.Key
		if !seen || bytes.Equal(old, e.Key) {
			return nil
		}
		a.Kind = AlertKeyChanged
	}
	m.Alerts = append(m.Alerts, a)
	return []Alert{a}
}

// foreignCommitment raises AlertForeignCommitment for entry e about a
// known device under another account's commitment, once per device.
func (m *monitorState) foreignCommitment(index int64, e *transparency.Entry) []Alert {
	for _, old := range m.Alerts {
		if old.Kind == AlertForeignCommitment && old.DeviceID == e.Device {
			return nil
		}
	}
	a := Alert{Kind: AlertForeignCommitment, DeviceID: e.Device, Index: index, Entry: string(e.Kind), LoggedAt: time.Unix(e.Time, 0).UTC()}
	m.Alerts = append(m.Alerts, a)
	return []Alert{a}
}

// deviceLine returns the value of an encoded entry's "device" line, or "".
func deviceLine(data []byte) string {
	_, rest, ok := bytes.Cut(data, []byte("\ndevice "))
	if !ok {
		return ""
	}
	v, _, _ := bytes.Cut(rest, []byte("\n"))
	return string(v)
}

// monitorSalt returns this account's log salt: the pinned one, or, before
// one is pinned, the one the directory's list of the account's devices
// gives (Devices pins it). A deployment that logs in version 2 always
// gives one; a directory without it fails the poll, since the monitor
// could not recognise the account's version 2 entries.
func (c *Client) monitorSalt(ctx context.Context) ([]byte, error) {
	salt, err := c.LogSalt(c.account)
	if err == nil {
		if _, ok := transparency.SaltOf(salt); !ok {
			return nil, fmt.Errorf("messaging/client: monitor: the pinned log salt has %d bytes", len(salt))
		}
		return salt, nil
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	list, err := c.Devices(ctx, c.account)
	if err != nil {
		return nil, fmt.Errorf("messaging/client: monitor: %w", err)
	}
	if list.Salt == nil {
		return nil, logErr(fmt.Errorf("the directory gives no log salt for account %s", c.account))
	}
	return list.Salt, nil
}

// monitorStart finds this device's enrolment entry in the directory's
// verified list of the account's devices: the index to start at, and the
// devices logged before it. Without one (a directory that lists no
// proof for it) the monitor starts at entry 0.
func (c *Client) monitorStart(ctx context.Context) (int64, []string, error) {
	list, err := c.Devices(ctx, c.account)
	if err != nil {
		return 0, nil, fmt.Errorf("messaging/client: monitor: %w", err)
	}
	start := int64(-1)
	for _, d := range list.Devices {
		if d.Device.DeviceID == c.device && bytes.Equal(d.der, c.certDER) {
			start = d.Index
		}
	}
	if start < 0 {
		return 0, nil, nil
	}
	var known []string
	for _, d := range list.Devices {
		if d.Index < start {
			known = append(known, d.Device.DeviceID)
		}
	}
	return start, known, nil
}

// logEntries fetches count entries from start (GET /v1/log/entries) and
// checks that they are those asked for, in order.
func (c *Client) logEntries(ctx context.Context, start, count int64) ([]transparency.LogEntry, error) {
	var es transparency.Entries
	path := "/v1/log/entries?start=" + strconv.FormatInt(start, 10) + "&count=" + strconv.FormatInt(count, 10)
	if err := c.do(ctx, http.MethodGet, path, nil, &es); err != nil {
		return nil, fmt.Errorf("messaging/client: log entries from %d: %w", start, err)
	}
	if len(es.Entries) == 0 || int64(len(es.Entries)) > count {
		return nil, logErr(fmt.Errorf("asked for %d entries from %d, got %d", count, start, len(es.Entries)))
	}
	for i, e := range es.Entries {
		if e.Index != start+int64(i) {
			return nil, logErr(fmt.Errorf("asked for entry %d, got %d", start+int64(i), e.Index))
		}
	}
	return es.Entries, nil
}

// tileFetcher is a tlog.TileReader over GET /v1/log/tile/. The hashes it
// returns are not trusted: tlog.TileHashReader checks every tile against
// the checkpoint's tree before using it, and only then hands it to
// SaveTiles, which keeps it for the rest of the poll.
type tileFetcher struct {
	ctx   context.Context
	c     *Client
	cache map[string][]byte
}

func (f *tileFetcher) Height() int { return LogTileHeight }

func (f *tileFetcher) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		if b, ok := f.cache[t.Path()]; ok {
			out[i] = b
			continue
		}
		b, err := f.c.getBytes(f.ctx, "/v1/log/"+t.Path(), t.W*tlog.HashSize)
		if err != nil {
			return nil, err
		}
		if len(b) != t.W*tlog.HashSize {
			return nil, fmt.Errorf("tile %s: %d bytes, want %d", t.Path(), len(b), t.W*tlog.HashSize)
		}
		out[i] = b
	}
	return out, nil
}

func (f *tileFetcher) SaveTiles(tiles []tlog.Tile, data [][]byte) {
	if len(f.cache) > maxCachedTiles {
		clear(f.cache)
	}
	for i, t := range tiles {
		f.cache[t.Path()] = data[i]
	}
}

// getBytes GETs an application/octet-stream answer of at most limit bytes.
func (c *Client) getBytes(ctx context.Context, path string, limit int) ([]byte, error) {
	if err := apiclient.CheckBase(c.base); err != nil {
		return nil, fmt.Errorf("messaging/client: %w", err)
	}
	req, err := apiclient.NewRequest(ctx, http.MethodGet, c.base+path, nil, "")
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := apiclient.ReadCapped(resp.Body, limit)
	if err != nil {
		return nil, fmt.Errorf("messaging/client: GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, problemOf(resp, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/octet-stream") {
		return nil, fmt.Errorf("messaging/client: GET %s: content type %q", path, ct)
	}
	return b, nil
}
