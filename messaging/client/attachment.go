package client

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/kanal-server/kanal/messaging"
	"github.com/kanal-server/kanal/messaging/kind"
)

// Attachments. A file is encrypted with a fresh 256-bit key (AES-256-GCM,
// a random nonce before the ciphertext), uploaded as an opaque blob, and
// named in an attachment message with the key and the SHA-256 of what
// was uploaded. The message travels end to end; the server keeps only
// ciphertext. A recipient downloads the blob, checks the hash — so the
// server cannot swap the file — and decrypts.

// ErrAttachment wraps a download that does not match its message.
var ErrAttachment = errors.New("messaging/client: attachment does not match its message")

// UploadAttachment encrypts data, uploads it and returns the body of an
// attachment message to send.
func (c *Client) UploadAttachment(ctx context.Context, data []byte, mimeType, name string) (*kind.AttachmentBody, error) {
	key := make([]byte, 32)
	if _, err := io.ReadFull(c.randReader(), key); err != nil {
		return nil, err
	}
	aead, err := newBlobAEAD(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := io.ReadFull(c.randReader(), nonce); err != nil {
		return nil, err
	}
	blob := aead.Seal(nonce, nonce, data, nil)
	if len(blob) > kind.MaxAttachment {
		return nil, fmt.Errorf("messaging/client: attachment of %d bytes is over the %d-byte limit", len(data), kind.MaxAttachment)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/blobs", bytes.NewReader(blob))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	var b messaging.Blob
	if err := c.raw(req, http.StatusCreated, &b); err != nil {
		return nil, fmt.Errorf("messaging/client: upload attachment: %w", err)
	}
	sum := sha256.Sum256(blob)
	if b.SHA256 != hex.EncodeToString(sum[:]) || b.Size != int64(len(blob)) {
		return nil, fmt.Errorf("messaging/client: upload attachment: the server stored something else")
	}
	body := &kind.AttachmentBody{BlobID: b.BlobID, Key: base64.StdEncoding.EncodeToString(key), SHA256: b.SHA256,
		Size: b.Size, MIME: mimeType, Name: name}
	if err := body.Validate(); err != nil {
		return nil, err
	}
	return body, nil
}

// DownloadAttachment fetches the blob an attachment message names, checks
// its size and hash, and decrypts it.
func (c *Client) DownloadAttachment(ctx context.Context, a *kind.AttachmentBody) ([]byte, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/blobs/"+url.PathEscape(a.BlobID), nil)
	if err != nil {
		return nil, err
	}
	var blob []byte
	if err := c.raw(req, http.StatusOK, &blob); err != nil {
		return nil, fmt.Errorf("messaging/client: download attachment: %w", err)
	}
	want, _ := hex.DecodeString(a.SHA256)
	sum := sha256.Sum256(blob)
	if int64(len(blob)) != a.Size || subtle.ConstantTimeCompare(sum[:], want) != 1 {
		return nil, ErrAttachment
	}
	key, _ := base64.StdEncoding.DecodeString(a.Key)
	aead, err := newBlobAEAD(key)
	if err != nil {
		return nil, err
	}
	if len(blob) < aead.NonceSize() {
		return nil, ErrAttachment
	}
	pt, err := aead.Open(nil, blob[:aead.NonceSize()], blob[aead.NonceSize():], nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAttachment, err)
	}
	return pt, nil
}

func newBlobAEAD(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func (c *Client) randReader() io.Reader {
	if c.rand != nil {
		return c.rand
	}
	return rand.Reader
}

// raw runs req with the session and reads the answer: JSON into *T, or
// the bytes into *[]byte.
func (c *Client) raw(req *http.Request, status int, out any) error {
	if tok := *c.token.Load(); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, kind.MaxAttachment+1))
	if err != nil {
		return err
	}
	if resp.StatusCode != status {
		return problemOf(resp, b)
	}
	if p, ok := out.(*[]byte); ok {
		*p = b
		return nil
	}
	return decodeStrict(b, out)
}
