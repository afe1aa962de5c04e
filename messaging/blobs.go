package messaging

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/kanal-server/kanal/internal/web"
)

// Attachment blobs. A client encrypts a file with a fresh key, uploads the
// ciphertext to POST /v1/blobs and sends an attachment message naming the
// blob id, the key and the ciphertext's SHA-256 end to end; recipients
// fetch GET /v1/blobs/{id}, check the hash and decrypt. The server holds
// ciphertext it cannot read; the random 128-bit id is the capability to
// fetch it, and only travels inside end-to-end messages. Blobs expire
// with the mailbox retention; each account has a storage quota.

// TypeQuotaExceeded: the account's unexpired blobs would exceed
// MaxBlobBytesPerAccount.
var TypeQuotaExceeded = web.NewType("quota-exceeded")

// TypeLengthRequired: an upload without Content-Length. The quota is
// checked against the declared length before the body is read.
var TypeLengthRequired = web.NewType("length-required")

// Blob answers POST /v1/blobs.
type Blob struct {
	BlobID    string    `json:"blob_id"`
	Size      int64     `json:"size"`
	SHA256    string    `json:"sha256"` // lower-case hex, of the stored bytes
	ExpiresAt time.Time `json:"expires_at"`
}

var blobIDPattern = regexp.MustCompile(`^b_[A-Za-z0-9_-]{22}$`)

// An upload is stored in two steps. reserveBlob checks the quota against
// the declared size and stores a pending row of that size (sha256 empty,
// expiring after BlobUploadTimeout), under a per-account lock so that
// concurrent uploads cannot all pass one check; only then is the body
// read, into a buffer of exactly the reserved size, and completeBlob fills
// the row in. An upload that fails in between deletes its reservation; one
// whose node dies leaves it to expire. Pending rows count against the
// quota and are never served.

func quotaExceeded(used int64) error {
	return web.Errorf(http.StatusInsufficientStorage, TypeQuotaExceeded, "Storage quota exceeded",
		"your attachments take %d of %d bytes until they expire", used, MaxBlobBytesPerAccount)
}

// reserveBlob reserves size bytes of account's quota for a new blob.
func (s *Service) reserveBlob(ctx context.Context, c Caller, size int64) (*Blob, error) {
	if size <= 0 {
		return nil, fmt.Errorf("%w: an empty blob", ErrInvalid)
	}
	if size > MaxBlob {
		return nil, web.Errorf(http.StatusRequestEntityTooLarge, web.TypeTooLarge, "Blob too large", "a blob holds at most %d bytes", MaxBlob)
	}
	var id [16]byte
	_, _ = rand.Read(id[:])
	now := s.now()
	b := &Blob{BlobID: "b_" + base64.RawURLEncoding.EncodeToString(id[:]), Size: size,
		ExpiresAt: now.Add(s.retention).UTC().Truncate(time.Second)}
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := s.db.Lock(ctx, tx, "messaging.blobs:"+c.AccountID); err != nil {
			return err
		}
		var used int64
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(SUM(size), 0) FROM messaging_blobs WHERE uploader = $1 AND expires_at > $2`,
			c.AccountID, now.Unix()).Scan(&used); err != nil {
			return err
		}
		if used+size > MaxBlobBytesPerAccount {
			return quotaExceeded(used)
		}
		// The placeholder byte keeps data NOT NULL on both engines; an
		// empty sha256 marks the row pending.
		_, err := tx.ExecContext(ctx, `INSERT INTO messaging_blobs (id, uploader, size, sha256, data, created_at, expires_at)
			VALUES ($1, $2, $3, '', $4, $5, $6)`, b.BlobID, c.AccountID, size, []byte{0}, now.Unix(), now.Add(BlobUploadTimeout).Unix())
		return err
	})
	var p *web.Problem
	if errors.As(err, &p) {
		return nil, p
	}
	if err != nil {
		return nil, fmt.Errorf("messaging.blob: %w", err)
	}
	return b, nil
}

// completeBlob stores the bytes of a reserved blob, which must be exactly
// the reserved size.
func (s *Service) completeBlob(ctx context.Context, b *Blob, data []byte) error {
	if int64(len(data)) != b.Size {
		return fmt.Errorf("messaging.blob: %d bytes for a reservation of %d", len(data), b.Size)
	}
	sum := sha256.Sum256(data)
	b.SHA256 = hex.EncodeToString(sum[:])
	res, err := s.db.Exec(ctx, `UPDATE messaging_blobs SET data = $1, sha256 = $2, expires_at = $3 WHERE id = $4 AND sha256 = ''`,
		data, b.SHA256, b.ExpiresAt.Unix(), b.BlobID)
	if err != nil {
		return fmt.Errorf("messaging.blob: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return web.Errorf(http.StatusRequestTimeout, web.TypeBadRequest, "Upload too slow",
			"the upload took longer than %d seconds; upload again", int(BlobUploadTimeout.Seconds()))
	}
	return nil
}

// dropReservation deletes a pending blob whose upload failed.
func (s *Service) dropReservation(b *Blob) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A failure leaves the row to expire after BlobUploadTimeout.
	_, _ = s.db.Exec(ctx, `DELETE FROM messaging_blobs WHERE id = $1 AND sha256 = ''`, b.BlobID)
}

// UploadBlob stores data for account and returns its id.
func (s *Service) UploadBlob(ctx context.Context, c Caller, data []byte) (*Blob, error) {
	b, err := s.reserveBlob(ctx, c, int64(len(data)))
	if err != nil {
		return nil, err
	}
	if err := s.completeBlob(ctx, b, data); err != nil {
		s.dropReservation(b)
		return nil, err
	}
	return b, nil
}

var errNoBlob = web.Errorf(http.StatusNotFound, web.TypeNotFound, "No such blob", "no blob with this id, or it has expired")

// Blob returns a blob's bytes and hash.
func (s *Service) Blob(ctx context.Context, id string) ([]byte, string, error) {
	if !blobIDPattern.MatchString(id) {
		return nil, "", errNoBlob
	}
	var data []byte
	var sum string
	err := s.db.QueryRow(ctx, `SELECT data, sha256 FROM messaging_blobs WHERE id = $1 AND expires_at > $2 AND sha256 <> ''`, id, s.now().Unix()).Scan(&data, &sum)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", errNoBlob
	}
	if err != nil {
		return nil, "", fmt.Errorf("messaging.blob: %w", err)
	}
	return data, sum, nil
}

// ExpireBlobs deletes expired blobs and returns how many.
func (s *Service) ExpireBlobs(ctx context.Context) (int64, error) {
	r, err := s.db.Exec(ctx, `DELETE FROM messaging_blobs WHERE expires_at <= $1`, s.now().Unix())
	if err != nil {
		return 0, fmt.Errorf("messaging.blob: %w", err)
	}
	return r.RowsAffected()
}

func (s *Service) handleUploadBlob(w http.ResponseWriter, r *http.Request, c Caller) error {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/octet-stream" {
		return web.Errorf(http.StatusUnsupportedMediaType, web.TypeUnsupportedMedia, "Unsupported media type",
			"a blob is uploaded as application/octet-stream")
	}
	if r.ContentLength < 0 {
		return web.Errorf(http.StatusLengthRequired, TypeLengthRequired, "Length required",
			"send the blob with a Content-Length header")
	}
	// The quota is checked, and the space reserved, from the declared
	// length before a byte of the body is read.
	b, err := s.reserveBlob(r.Context(), c, r.ContentLength)
	if err != nil {
		return err
	}
	data := make([]byte, b.Size)
	_, err = io.ReadFull(http.MaxBytesReader(w, r.Body, b.Size), data)
	if err != nil {
		s.dropReservation(b)
		return web.Errorf(http.StatusBadRequest, web.TypeBadRequest, "Upload interrupted", "the body ended before its Content-Length")
	}
	if err := s.completeBlob(r.Context(), b, data); err != nil {
		s.dropReservation(b)
		return err
	}
	web.WriteJSON(w, http.StatusCreated, b)
	return nil
}

func (s *Service) handleGetBlob(w http.ResponseWriter, r *http.Request, _ Caller) error {
	data, sum, err := s.Blob(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.Itoa(len(data)))
	h.Set("Cache-Control", "private, max-age=86400, immutable")
	h.Set("ETag", `"`+sum+`"`)
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(data)
	return err
}
