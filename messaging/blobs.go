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

// Blob answers POST /v1/blobs.
type Blob struct {
	BlobID    string    `json:"blob_id"`
	Size      int64     `json:"size"`
	SHA256    string    `json:"sha256"` // lower-case hex, of the stored bytes
	ExpiresAt time.Time `json:"expires_at"`
}

var blobIDPattern = regexp.MustCompile(`^b_[A-Za-z0-9_-]{22}$`)

// UploadBlob stores data for account and returns its id.
func (s *Service) UploadBlob(ctx context.Context, c Caller, data []byte) (*Blob, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: an empty blob", ErrInvalid)
	}
	if len(data) > MaxBlob {
		return nil, web.Errorf(http.StatusRequestEntityTooLarge, web.TypeTooLarge, "Blob too large", "a blob holds at most %d bytes", MaxBlob)
	}
	var id [16]byte
	_, _ = rand.Read(id[:])
	sum := sha256.Sum256(data)
	now := s.now()
	b := &Blob{BlobID: "b_" + base64.RawURLEncoding.EncodeToString(id[:]), Size: int64(len(data)),
		SHA256: hex.EncodeToString(sum[:]), ExpiresAt: now.Add(s.retention).UTC().Truncate(time.Second)}
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var used int64
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(SUM(size), 0) FROM messaging_blobs WHERE uploader = $1 AND expires_at > $2`,
			c.AccountID, now.Unix()).Scan(&used); err != nil {
			return err
		}
		if used+b.Size > MaxBlobBytesPerAccount {
			return web.Errorf(http.StatusInsufficientStorage, TypeQuotaExceeded, "Storage quota exceeded",
				"your attachments take %d of %d bytes until they expire", used, MaxBlobBytesPerAccount)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO messaging_blobs (id, uploader, size, sha256, data, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, b.BlobID, c.AccountID, b.Size, b.SHA256, data, now.Unix(), b.ExpiresAt.Unix())
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

var errNoBlob = web.Errorf(http.StatusNotFound, web.TypeNotFound, "No such blob", "no blob with this id, or it has expired")

// Blob returns a blob's bytes and hash.
func (s *Service) Blob(ctx context.Context, id string) ([]byte, string, error) {
	if !blobIDPattern.MatchString(id) {
		return nil, "", errNoBlob
	}
	var data []byte
	var sum string
	err := s.db.QueryRow(ctx, `SELECT data, sha256 FROM messaging_blobs WHERE id = $1 AND expires_at > $2`, id, s.now().Unix()).Scan(&data, &sum)
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
	if r.ContentLength > MaxBlob {
		return web.Errorf(http.StatusRequestEntityTooLarge, web.TypeTooLarge, "Blob too large", "a blob holds at most %d bytes", MaxBlob)
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBlob))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return web.Errorf(http.StatusRequestEntityTooLarge, web.TypeTooLarge, "Blob too large", "a blob holds at most %d bytes", MaxBlob)
	}
	if err != nil {
		return web.Errorf(http.StatusBadRequest, web.TypeBadRequest, "Upload interrupted", "the body could not be read")
	}
	b, err := s.UploadBlob(r.Context(), c, data)
	if err != nil {
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
