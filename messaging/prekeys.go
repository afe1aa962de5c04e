package messaging

import (
	"context"
	"crypto/x509"
	"database/sql"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/identity/translog"
	"github.com/kanal-server/kanal/internal/db"
	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/keys"
	"github.com/kanal-server/kanal/messaging/mailbox"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the messaging schema (the prekey directory).
func Migrations() db.Migrations { return db.Embedded("messaging", migrationFiles) }

// Errors of the prekey directory. Each maps to one problem type at the HTTP
// edge; returned errors wrap one of them and say what was wrong.
var (
	ErrInvalid        = errors.New("messaging: invalid request")
	ErrInvalidKey     = errors.New("messaging: invalid key")
	ErrBadSignature   = errors.New("messaging: bad prekey signature")
	ErrBadBinding     = errors.New("messaging: identity binding does not verify against the device certificate")
	ErrDuplicateKeyID = errors.New("messaging: duplicate prekey id")
	ErrBatchTooLarge  = errors.New("messaging: prekey batch too large")
	ErrTooManyPrekeys = errors.New("messaging: too many stored prekeys")
	ErrNoIdentity     = errors.New("messaging: identity not published")
	ErrRateLimited    = errors.New("messaging: too many claims")
)

// RateLimitError is returned (wrapping ErrRateLimited) when a claim is over
// the limit; RetryAfter is when the current window ends.
type RateLimitError struct {
	RetryAfter time.Duration
	sends      int    // the send limit, for a send; 0 for a claim
	group      string // "group creations" or "group changes", for those
	limit      int
}

func (e *RateLimitError) Error() string {
	if e.group != "" {
		return fmt.Sprintf("messaging.group: at most %d %s per device per %s", e.limit, e.group, GroupWindow)
	}
	if e.sends > 0 {
		return fmt.Sprintf("messaging.send: at most %d sends per device per %s", e.sends, SendWindow)
	}
	return fmt.Sprintf("messaging.claim: at most %d claims per %s", MaxClaimsPerWindow, ClaimWindow)
}
func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

// Options configures a Service. DB, Directory and Auth are required.
type Options struct {
	DB        *db.DB // must carry Migrations()
	Directory Directory
	Auth      Auth
	Logger    *slog.Logger     // nil: discard
	Now       func() time.Time // nil: time.Now

	// Mailbox enables POST /v1/messages: sends store their envelopes
	// there. Nil leaves the route out.
	Mailbox *mailbox.Store
	// Batcher, if set, runs each send's transaction in a shared commit;
	// a send it does not admit (see db.Admission) is refused with
	// TypeOverloaded.
	Batcher *db.Batcher
	// Admission bounds the sends in flight, from arrival to answer (see
	// sendGate): past about MaxDelay of measured sends, or MaxQueue if
	// set, a send is refused with TypeOverloaded. MinQueue zero:
	// DefaultMinSendsInFlight. The zero value admits every send.
	Admission db.Admission
	// Notify is called with the recipient devices after a send commits
	// (cmd/kanald wires the hub's Notify). Nil: nobody is told.
	Notify func(devices ...string)
	// Stored, if set, is called instead of Notify after a send commits,
	// with the stored envelopes (ids and sequence numbers assigned):
	// cmd/kanald wires the hub's Deliver, which carries small envelopes
	// in the wake-up. Group changes and notices still go to Notify.
	Stored func(envs []mailbox.Envelope)
	// MaxSendsPerWindow overrides the per-device send limit (0: the
	// default MaxSendsPerWindow).
	MaxSendsPerWindow int
	// Retention is how long attachment blobs are kept (0: the mailbox's
	// DefaultRetention).
	Retention time.Duration
	// Notary signs the notices the server writes (group changes, what
	// PostNotice is given); required with Mailbox. cmd/kanald passes the
	// deployment notary from the CA directory.
	Notary *ca.Notary
	// MailboxQuota overrides the per-device mailbox quota sends must fit
	// in (a zero field: MaxMailboxEnvelopes, MaxMailboxBytes).
	MailboxQuota mailbox.Quota
	// Log is the transparency log: a published identity key is appended
	// in the transaction that stores it, and claims attach the proofs.
	// Nil keeps no log (the directory's own unit tests); cmd/kanald
	// always sets it.
	Log *translog.Log
	// Roots is the deployment's CA, against which announcements are
	// verified. With Mailbox it enables the broadcast routes.
	Roots *x509.CertPool
	// Fanout, if set, is called after an announcement commits with the
	// follower devices' references and the announcement (cmd/kanald
	// wires the hub's Fanout); otherwise Notify gets the devices.
	Fanout func(refs []mailbox.Envelope, body []byte)
	// DeviceSetTTL is how long this node may keep an account's device
	// set (its active devices with published keys) in memory for sends;
	// see deviceSets for what drops one sooner. Zero keeps none: every
	// send asks the database. cmd/kanald uses DeviceSetTTL.
	DeviceSetTTL time.Duration
}

// Service is the prekey directory. Its methods are safe for concurrent use.
type Service struct {
	db   *db.DB
	dir  Directory
	auth Auth
	log  *slog.Logger
	now  func() time.Time

	mailbox *mailbox.Store
	batch   *db.Batcher
	notify  func(devices ...string)
	stored  func(envs []mailbox.Envelope)
	limit   *sendLimiter
	// groupCreates and groupChanges count group creations and an admin's
	// membership changes per device (GroupWindow).
	groupCreates, groupChanges *sendLimiter
	retention                  time.Duration
	notary                     *ca.Notary
	quota                      mailbox.Quota
	tlog                       *translog.Log
	roots                      *x509.CertPool
	fanout                     func(refs []mailbox.Envelope, body []byte)
	broadcasts                 *sendLimiter
	sets                       *deviceSets // nil: none kept
	gate                       *sendGate   // nil: every send admitted
}

// New checks o and returns a Service.
func New(o Options) (*Service, error) {
	if o.DB == nil || o.Directory == nil || o.Auth.Require == nil || o.Auth.Caller == nil {
		return nil, errors.New("messaging: DB, Directory and Auth are required")
	}
	if o.Mailbox != nil && o.Notary == nil {
		return nil, errors.New("messaging: Mailbox needs Notary, which signs the server's notices")
	}
	s := &Service{db: o.DB, dir: o.Directory, auth: o.Auth, log: o.Logger, now: o.Now,
		mailbox: o.Mailbox, batch: o.Batcher, notify: o.Notify, stored: o.Stored, retention: o.Retention, quota: o.MailboxQuota, notary: o.Notary, tlog: o.Log,
		roots: o.Roots, fanout: o.Fanout, gate: newSendGate(o.Admission)}
	if s.quota.MaxEnvelopes <= 0 {
		s.quota.MaxEnvelopes = MaxMailboxEnvelopes
	}
	if s.quota.MaxBytes <= 0 {
		s.quota.MaxBytes = MaxMailboxBytes
	}
	if s.retention <= 0 {
		s.retention = mailbox.DefaultRetention
	}
	limit := o.MaxSendsPerWindow
	if limit <= 0 {
		limit = MaxSendsPerWindow
	}
	s.limit = newSendLimiter(limit, SendWindow)
	s.groupCreates = newSendLimiter(MaxGroupCreatesPerWindow, GroupWindow)
	s.groupChanges = newSendLimiter(MaxGroupChangesPerWindow, GroupWindow)
	s.broadcasts = newSendLimiter(MaxBroadcastsPerWindow, BroadcastWindow)
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if o.DeviceSetTTL > 0 {
		s.sets = newDeviceSets(o.DeviceSetTTL, s.now)
	}
	return s, nil
}

// DeletePrekeys removes everything a device published, inside tx. It has the
// shape of identity's RevocationHook: registered there, it runs in the
// transaction that revokes the device, so a revoked device's keys are gone
// when the revocation commits. On SQLite the delete of the device's
// idempotency rows reads the whole table, whose key leads with the client
// id (migration 0009): about 0.4 s per million rows of the last day, which
// every send saves many times over (docs/benchmarks.md, "Idempotency rows
// keyed client id first on SQLite").
func DeletePrekeys(ctx context.Context, tx *sql.Tx, deviceID string) error {
	for _, q := range []string{
		`DELETE FROM messaging_one_time_prekeys WHERE device_id = $1`,
		`DELETE FROM messaging_pq_prekeys WHERE device_id = $1`,
		`DELETE FROM messaging_identities WHERE device_id = $1`,
		`DELETE FROM messaging_sends WHERE sender_device = $1`,
	} {
		if _, err := tx.ExecContext(ctx, q, deviceID); err != nil {
			return fmt.Errorf("messaging.DeletePrekeys: %w", err)
		}
	}
	return nil
}

// decodeSig decodes an unpadded base64url signature.
func decodeSig(field, s string) ([]byte, error) {
	if s == "" || len(s) > 256 {
		return nil, fmt.Errorf("%w: %s: missing or too long", ErrInvalid, field)
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: not unpadded base64url", ErrInvalid, field)
	}
	return b, nil
}

// decodeKey decodes a key's text form into k.
func decodeKey(field, s string, k interface{ UnmarshalText([]byte) error }) error {
	if s == "" {
		return fmt.Errorf("%w: %s: missing", ErrInvalidKey, field)
	}
	if len(s) > keys.MaxTextKeyLen {
		return fmt.Errorf("%w: %s: too long", ErrInvalidKey, field)
	}
	if err := k.UnmarshalText([]byte(s)); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalidKey, field, err)
	}
	return nil
}

func bin(k interface{ MarshalBinary() ([]byte, error) }) []byte {
	b, err := k.MarshalBinary()
	if err != nil {
		panic(err) // only valid, decoded keys reach here
	}
	return b
}

// publication is a checked PublishRequest.
type publication struct {
	id            keys.IdentityPublic
	binding       []byte
	spk           keys.SignedPrekeyPublic
	spkSig        []byte
	lastResort    keys.PQPrekeyPublic
	lastResortSig []byte
}

func checkPublish(req *PublishRequest) (*publication, error) {
	var p publication
	var err error
	if err = decodeKey("identity", req.Identity, &p.id); err != nil {
		return nil, err
	}
	if err = decodeKey("signed_prekey", req.SignedPrekey, &p.spk); err != nil {
		return nil, err
	}
	if err = decodeKey("pq_last_resort_prekey", req.LastResort, &p.lastResort); err != nil {
		return nil, err
	}
	if !p.lastResort.LastResort() {
		return nil, fmt.Errorf("%w: pq_last_resort_prekey: not marked last resort", ErrInvalidKey)
	}
	if p.binding, err = decodeSig("identity_binding", req.IdentityBinding); err != nil {
		return nil, err
	}
	if p.spkSig, err = decodeSig("signed_prekey_sig", req.SignedPrekeySig); err != nil {
		return nil, err
	}
	if p.lastResortSig, err = decodeSig("pq_last_resort_prekey_sig", req.LastResortSig); err != nil {
		return nil, err
	}
	if err := p.id.VerifySignedPrekey(p.spk, p.spkSig); err != nil {
		return nil, fmt.Errorf("%w: signed_prekey", ErrBadSignature)
	}
	if err := p.id.VerifyPQPrekey(p.lastResort, p.lastResortSig); err != nil {
		return nil, fmt.Errorf("%w: pq_last_resort_prekey", ErrBadSignature)
	}
	return &p, nil
}

// checkBinding verifies that the device key in the device's certificate
// signed the identity key for this device.
func (s *Service) checkBinding(ctx context.Context, deviceID string, id keys.IdentityPublic, sig []byte) ([]byte, error) {
	dev, err := s.dir.Device(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(dev.Certificate)
	if err != nil {
		return nil, fmt.Errorf("messaging: certificate of device %s: %w", deviceID, err)
	}
	if err := keys.VerifyIdentity(cert.PublicKey, id, deviceID, sig); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadBinding, err)
	}
	return dev.Certificate, nil
}

// Publish stores the calling device's identity, signed prekey and
// last-resort prekey after checking every signature. A new identity key
// drops the device's unused one-time prekeys.
func (s *Service) Publish(ctx context.Context, c Caller, req *PublishRequest) (*PrekeyStatus, error) {
	p, err := checkPublish(req)
	if err != nil {
		return nil, err
	}
	certDER, err := s.checkBinding(ctx, c.DeviceID, p.id, p.binding)
	if err != nil {
		return nil, err
	}
	idBin := bin(p.id)
	var st *PrekeyStatus
	var introduced bool
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		var old []byte
		err := tx.QueryRowContext(ctx, `SELECT identity_key FROM messaging_identities WHERE device_id = $1`, c.DeviceID).Scan(&old)
		newKey := false
		switch {
		case errors.Is(err, sql.ErrNoRows):
			newKey = true
		case err != nil:
			return err
		default:
			var oldID keys.IdentityPublic
			if oldID.UnmarshalBinary(old) != nil || !oldID.Equal(p.id) {
				newKey = true
				if err := DeletePrekeys(ctx, tx, c.DeviceID); err != nil {
					return err
				}
			}
		}
		// A device with a new identity key (a new device, or one that lost
		// its state) missed the membership changes of its account's groups:
		// it gets each group's member list, or its client could not send
		// there.
		if newKey {
			if introduced, err = s.introduceGroups(ctx, tx, c); err != nil {
				return err
			}
		}
		// The key goes into the transparency log with its publication,
		// unless the log already has it under this certificate.
		if err := s.logIdentity(ctx, tx, c.AccountID, c.DeviceID, certDER, idBin); err != nil {
			return err
		}
		// A one-time PQ prekey may not share the last-resort key's id: the
		// device finds its private key by the id an initial message names.
		var one int
		err = tx.QueryRowContext(ctx, `SELECT 1 FROM messaging_pq_prekeys WHERE device_id = $1 AND key_id = $2`,
			c.DeviceID, int64(p.lastResort.ID())).Scan(&one)
		if err == nil {
			return fmt.Errorf("%w: pq_last_resort_prekey id %d is a stored one-time prekey's", ErrDuplicateKeyID, p.lastResort.ID())
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO messaging_identities
			(device_id, account_id, identity_key, identity_binding, signed_prekey, signed_prekey_sig, last_resort, last_resort_id, last_resort_sig, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			ON CONFLICT (device_id) DO UPDATE SET account_id = excluded.account_id, identity_key = excluded.identity_key,
			identity_binding = excluded.identity_binding, signed_prekey = excluded.signed_prekey,
			signed_prekey_sig = excluded.signed_prekey_sig, last_resort = excluded.last_resort,
			last_resort_id = excluded.last_resort_id, last_resort_sig = excluded.last_resort_sig, updated_at = excluded.updated_at`,
			c.DeviceID, c.AccountID, idBin, p.binding, bin(p.spk), p.spkSig, bin(p.lastResort), int64(p.lastResort.ID()),
			p.lastResortSig, s.now().Unix())
		if err != nil {
			return err
		}
		st, err = status(ctx, tx, c.DeviceID)
		return err
	})
	if err != nil {
		return nil, err
	}
	// The device may have published for the first time: sends address
	// it from now on.
	s.ForgetAccount(c.AccountID)
	if introduced && s.notify != nil {
		s.notify(c.DeviceID)
	}
	return st, nil
}

// introduceGroups stores, for the calling device, the member list of
// every group of its account as group.change notices (op member), in tx.
// It reports whether it stored any.
func (s *Service) introduceGroups(ctx context.Context, tx *sql.Tx, c Caller) (bool, error) {
	if s.mailbox == nil {
		return false, nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT group_id FROM messaging_group_members WHERE account_id = $1 ORDER BY group_id`, c.AccountID)
	if err != nil {
		return false, err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return false, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, err
	}
	var envs []mailbox.Envelope
	for _, id := range ids {
		g, err := s.loadGroup(ctx, tx, id)
		if err != nil {
			return false, err
		}
		if g == nil {
			continue
		}
		e, err := s.rosterNotices(g, []string{c.DeviceID})
		if err != nil {
			return false, err
		}
		envs = append(envs, e...)
	}
	if len(envs) == 0 {
		return false, nil
	}
	return true, s.mailbox.AppendTx(ctx, tx, envs)
}

// AddPrekeys stores a batch of one-time prekeys for the calling device,
// which must have published its identity: the PQ keys' signatures are
// checked against it. The batch is stored whole or not at all.
func (s *Service) AddPrekeys(ctx context.Context, c Caller, req *PrekeyBatch) (*PrekeyStatus, error) {
	if len(req.OneTimePrekeys) > MaxPrekeyBatch || len(req.PQPrekeys) > MaxPrekeyBatch {
		return nil, fmt.Errorf("%w: at most %d keys of each kind", ErrBatchTooLarge, MaxPrekeyBatch)
	}
	if len(req.OneTimePrekeys) == 0 && len(req.PQPrekeys) == 0 {
		return nil, fmt.Errorf("%w: empty batch", ErrInvalid)
	}
	opks := make([]keys.OneTimePrekeyPublic, len(req.OneTimePrekeys))
	seen := map[uint32]bool{}
	for i, t := range req.OneTimePrekeys {
		if err := decodeKey(fmt.Sprintf("one_time_prekeys[%d]", i), t, &opks[i]); err != nil {
			return nil, err
		}
		if seen[opks[i].ID()] {
			return nil, fmt.Errorf("%w: one_time_prekeys[%d]: id %d appears twice", ErrDuplicateKeyID, i, opks[i].ID())
		}
		seen[opks[i].ID()] = true
	}
	pqs := make([]keys.PQPrekeyPublic, len(req.PQPrekeys))
	pqSigs := make([][]byte, len(req.PQPrekeys))
	clear(seen)
	for i, k := range req.PQPrekeys {
		field := fmt.Sprintf("pq_prekeys[%d]", i)
		if err := decodeKey(field, k.Key, &pqs[i]); err != nil {
			return nil, err
		}
		if pqs[i].LastResort() {
			return nil, fmt.Errorf("%w: %s: a one-time key may not be marked last resort", ErrInvalidKey, field)
		}
		if seen[pqs[i].ID()] {
			return nil, fmt.Errorf("%w: %s: id %d appears twice", ErrDuplicateKeyID, field, pqs[i].ID())
		}
		seen[pqs[i].ID()] = true
		var err error
		if pqSigs[i], err = decodeSig(field+".sig", k.Sig); err != nil {
			return nil, err
		}
	}
	var st *PrekeyStatus
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var idBin []byte
		var lastResortID int64
		err := tx.QueryRowContext(ctx, `SELECT identity_key, last_resort_id FROM messaging_identities WHERE device_id = $1`,
			c.DeviceID).Scan(&idBin, &lastResortID)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: PUT /v1/prekeys first", ErrNoIdentity)
		} else if err != nil {
			return err
		}
		var id keys.IdentityPublic
		if err := id.UnmarshalBinary(idBin); err != nil {
			return fmt.Errorf("messaging: stored identity of %s: %w", c.DeviceID, err)
		}
		for i, k := range pqs {
			if err := id.VerifyPQPrekey(k, pqSigs[i]); err != nil {
				return fmt.Errorf("%w: pq_prekeys[%d]", ErrBadSignature, i)
			}
			if int64(k.ID()) == lastResortID {
				return fmt.Errorf("%w: pq_prekeys[%d]: id %d is the last-resort key's", ErrDuplicateKeyID, i, k.ID())
			}
		}
		cur, err := status(ctx, tx, c.DeviceID)
		if err != nil {
			return err
		}
		if cur.OneTimePrekeys+len(opks) > MaxStoredPrekeys || cur.PQPrekeys+len(pqs) > MaxStoredPrekeys {
			return fmt.Errorf("%w: the directory keeps at most %d unused one-time prekeys of each kind per device (it holds %d and %d)",
				ErrTooManyPrekeys, MaxStoredPrekeys, cur.OneTimePrekeys, cur.PQPrekeys)
		}
		for i, k := range opks {
			_, err := tx.ExecContext(ctx, `INSERT INTO messaging_one_time_prekeys (device_id, key_id, public_key) VALUES ($1, $2, $3)`,
				c.DeviceID, int64(k.ID()), bin(k))
			if db.IsUniqueViolation(err) {
				return fmt.Errorf("%w: one_time_prekeys[%d]: id %d is already stored", ErrDuplicateKeyID, i, k.ID())
			} else if err != nil {
				return err
			}
		}
		for i, k := range pqs {
			_, err := tx.ExecContext(ctx, `INSERT INTO messaging_pq_prekeys (device_id, key_id, public_key, signature) VALUES ($1, $2, $3, $4)`,
				c.DeviceID, int64(k.ID()), bin(k), pqSigs[i])
			if db.IsUniqueViolation(err) {
				return fmt.Errorf("%w: pq_prekeys[%d]: id %d is already stored", ErrDuplicateKeyID, i, k.ID())
			} else if err != nil {
				return err
			}
		}
		st, err = status(ctx, tx, c.DeviceID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// querier is what *sql.Tx and *db.DB share for reads.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

type dbReader struct{ d *db.DB }

func (r dbReader) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return r.d.QueryRow(ctx, q, args...)
}

func status(ctx context.Context, q querier, deviceID string) (*PrekeyStatus, error) {
	var st PrekeyStatus
	var spk []byte
	var lastResortID, updated int64
	err := q.QueryRowContext(ctx, `SELECT signed_prekey, last_resort_id, updated_at FROM messaging_identities WHERE device_id = $1`,
		deviceID).Scan(&spk, &lastResortID, &updated)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, err
	default:
		var k keys.SignedPrekeyPublic
		if err := k.UnmarshalBinary(spk); err != nil {
			return nil, fmt.Errorf("messaging: stored signed prekey of %s: %w", deviceID, err)
		}
		st.Published = true
		st.SignedPrekeyID = k.ID()
		st.LastResortID = uint32(lastResortID)
		t := time.Unix(updated, 0).UTC()
		st.UpdatedAt = &t
	}
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM messaging_one_time_prekeys WHERE device_id = $1`, deviceID).Scan(&st.OneTimePrekeys); err != nil {
		return nil, err
	}
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM messaging_pq_prekeys WHERE device_id = $1`, deviceID).Scan(&st.PQPrekeys); err != nil {
		return nil, err
	}
	st.Low = !st.Published || st.OneTimePrekeys < LowPrekeys || st.PQPrekeys < LowPrekeys
	return &st, nil
}

// Status reports what the directory holds for a device.
func (s *Service) Status(ctx context.Context, deviceID string) (*PrekeyStatus, error) {
	return status(ctx, dbReader{s.db}, deviceID)
}

// Claim hands out a bundle for every active device of an account, or every
// agent device of an organisation, except the caller's own device. Each
// bundle takes one one-time prekey of each kind if the device has any left.
func (s *Service) Claim(ctx context.Context, c Caller, req *ClaimRequest) (*ClaimResponse, error) {
	if (req.AccountID == "") == (req.OrgID == "") {
		return nil, fmt.Errorf("%w: exactly one of account_id and org_id", ErrInvalid)
	}
	if id := req.AccountID + req.OrgID; !ca.ValidID(id) {
		return nil, fmt.Errorf("%w: malformed id", ErrInvalid)
	}
	var resp ClaimResponse
	var devices []Device
	var err error
	if req.AccountID != "" {
		devices, err = s.dir.AccountDevices(ctx, req.AccountID)
	} else {
		var orgCert []byte
		orgCert, devices, err = s.dir.OrgAgents(ctx, req.OrgID)
		resp.OrgCertificate = pemCert(orgCert)
	}
	if err != nil {
		return nil, err
	}
	if req.AccountID != "" && len(devices) == 0 {
		// As for an unknown organisation: an empty claim would read as an
		// account whose devices have not published keys yet.
		return nil, web.Errorf(http.StatusNotFound, TypeUnknownRecipient, "Unknown account",
			"account %s has no active devices", req.AccountID)
	}
	if len(req.Devices) > MaxClaimFilter {
		return nil, fmt.Errorf("%w: devices: at most %d", ErrInvalid, MaxClaimFilter)
	}
	if req.After != "" && !mailbox.ValidDeviceID(req.After) {
		return nil, fmt.Errorf("%w: after: malformed device id", ErrInvalid)
	}
	devices = slicesDeleteFunc(devices, func(d Device) bool {
		return d.DeviceID == c.DeviceID || d.DeviceID <= req.After && req.After != "" ||
			len(req.Devices) > 0 && !slices.Contains(req.Devices, d.DeviceID)
	})
	sort.Slice(devices, func(i, j int) bool { return devices[i].DeviceID < devices[j].DeviceID })
	if len(devices) > MaxClaimDevices {
		devices = devices[:MaxClaimDevices]
		resp.Next = devices[len(devices)-1].DeviceID
	}
	// Claim in device id order, so that concurrent claims of overlapping
	// device sets lock one-time keys in the same order and cannot deadlock.
	// The count and the claim share one transaction, so a claim costs one
	// commit; a refused claim rolls back and does not count.
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := s.countClaim(ctx, tx, c.AccountID); err != nil {
			return err
		}
		resp.Bundles, resp.Unpublished = resp.Bundles[:0], resp.Unpublished[:0]
		for _, d := range devices {
			b, ok, err := claimDevice(ctx, tx, d)
			if err != nil {
				return err
			}
			if !ok {
				resp.Unpublished = append(resp.Unpublished, d.DeviceID)
				continue
			}
			resp.Bundles = append(resp.Bundles, *b)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.attachProofs(ctx, req.OrgID, resp.Bundles); err != nil {
		return nil, err
	}
	if resp.Bundles == nil {
		resp.Bundles = []ClaimedBundle{}
	}
	if resp.Unpublished == nil {
		resp.Unpublished = []string{}
	}
	return &resp, nil
}

func slicesDeleteFunc(ds []Device, del func(Device) bool) []Device {
	out := make([]Device, 0, len(ds))
	for _, d := range ds {
		if !del(d) {
			out = append(out, d)
		}
	}
	return out
}

// claimDevice assembles one device's bundle inside tx, taking its one-time
// prekeys. ok is false when the device has published nothing.
func claimDevice(ctx context.Context, tx *sql.Tx, d Device) (*ClaimedBundle, bool, error) {
	var idBin, binding, spkBin, spkSig, lrBin, lrSig []byte
	err := tx.QueryRowContext(ctx, `SELECT identity_key, identity_binding, signed_prekey, signed_prekey_sig, last_resort, last_resort_sig
		FROM messaging_identities WHERE device_id = $1`, d.DeviceID).Scan(&idBin, &binding, &spkBin, &spkSig, &lrBin, &lrSig)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	} else if err != nil {
		return nil, false, err
	}
	b := keys.PrekeyBundle{DeviceID: d.DeviceID, SignedPrekeySig: spkSig}
	if err := b.Identity.UnmarshalBinary(idBin); err != nil {
		return nil, false, fmt.Errorf("messaging: stored identity of %s: %w", d.DeviceID, err)
	}
	if err := b.SignedPrekey.UnmarshalBinary(spkBin); err != nil {
		return nil, false, fmt.Errorf("messaging: stored signed prekey of %s: %w", d.DeviceID, err)
	}

	opk, ok, err := takeOne(ctx, tx, `messaging_one_time_prekeys`, `public_key`, d.DeviceID)
	if err != nil {
		return nil, false, err
	}
	if ok {
		if err := b.OneTimePrekey.UnmarshalBinary(opk[0]); err != nil {
			return nil, false, fmt.Errorf("messaging: stored one-time prekey of %s: %w", d.DeviceID, err)
		}
	}
	pq, ok, err := takeOne(ctx, tx, `messaging_pq_prekeys`, `public_key, signature`, d.DeviceID)
	if err != nil {
		return nil, false, err
	}
	if !ok {
		pq = [][]byte{lrBin, lrSig}
	}
	if err := b.PQPrekey.UnmarshalBinary(pq[0]); err != nil {
		return nil, false, fmt.Errorf("messaging: stored PQ prekey of %s: %w", d.DeviceID, err)
	}
	b.PQPrekeySig = pq[1]
	return &ClaimedBundle{
		AccountID:             d.AccountID,
		Certificate:           pemCert(d.Certificate),
		MembershipCertificate: pemCert(d.Membership),
		IdentityBinding:       base64.RawURLEncoding.EncodeToString(binding),
		Bundle:                b,
	}, true, nil
}

// takeOne deletes and returns the device's one-time key with the lowest id
// from table, exactly once even when claims race.
//
// Both engines run the DELETE atomically, but on PostgreSQL under READ
// COMMITTED two claimers may pick the same lowest id: the second blocks on
// the first's row lock and, once the first commits, finds the row gone and
// deletes nothing. It then looks again with a fresh snapshot. Every empty
// round means another claimer took a key, so the loop ends after at most as
// many rounds as there were keys.
func takeOne(ctx context.Context, tx *sql.Tx, table, cols, deviceID string) ([][]byte, bool, error) {
	del := `DELETE FROM ` + table + ` WHERE device_id = $1 AND key_id =
		(SELECT MIN(key_id) FROM ` + table + ` WHERE device_id = $1) RETURNING ` + cols
	for {
		out := make([][]byte, 2)
		dst := []any{&out[0], &out[1]}
		if cols == `public_key` {
			dst = dst[:1]
		}
		err := tx.QueryRowContext(ctx, del, deviceID).Scan(dst...)
		if err == nil {
			return out, true, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return nil, false, err
		}
		var one int
		err = tx.QueryRowContext(ctx, `SELECT 1 FROM `+table+` WHERE device_id = $1 LIMIT 1`, deviceID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, false, nil // none left
		} else if err != nil {
			return nil, false, err
		}
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
	}
}

// countClaim counts a claim against the caller's window inside tx and
// refuses it over the limit. The counter lives in the database so that the
// limit holds across nodes; the upsert is atomic on both engines.
func (s *Service) countClaim(ctx context.Context, tx *sql.Tx, accountID string) error {
	now := s.now()
	win := int64(ClaimWindow / time.Second)
	start := now.Unix() / win * win
	if _, err := tx.ExecContext(ctx, `DELETE FROM messaging_claim_counters WHERE account_id = $1 AND window_start < $2`,
		accountID, start); err != nil {
		return err
	}
	var n int64
	err := tx.QueryRowContext(ctx, `INSERT INTO messaging_claim_counters (account_id, window_start, claims) VALUES ($1, $2, 1)
		ON CONFLICT (account_id, window_start) DO UPDATE SET claims = messaging_claim_counters.claims + 1
		RETURNING claims`, accountID, start).Scan(&n)
	if err != nil {
		return err
	}
	if n > MaxClaimsPerWindow {
		return &RateLimitError{RetryAfter: time.Unix(start+win, 0).Sub(now)}
	}
	return nil
}
