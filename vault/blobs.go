package vault

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
)

// Blobs stores ciphertexts by content address: the lower-case hex SHA-256
// of the bytes. The vault never stores a blob under another name, so a
// store cannot be tricked into serving other bytes for an address: Put
// refuses content that does not hash to it.
type Blobs interface {
	// Put stores size bytes from r under hash, refusing (and keeping
	// nothing) when they do not hash to it. Storing an address that is
	// already there is not an error.
	Put(ctx context.Context, hash string, size int64, r io.Reader) error
	// Get opens the blob; the error wraps ErrNotFound when it is absent.
	Get(ctx context.Context, hash string) (io.ReadCloser, error)
	// Delete removes the blob; deleting an absent one is not an error.
	Delete(ctx context.Context, hash string) error
	// Walk calls fn with the address of every blob stored.
	Walk(ctx context.Context, fn func(hash string) error) error
}

var hashPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ErrHashMismatch is Put's error when the bytes do not hash to the address.
var ErrHashMismatch = errors.New("content does not match its address")

// verifying reads exactly size bytes and, at their end, fails instead of
// returning io.EOF when they did not hash to want: a store writing from it
// aborts, so nothing is kept under a wrong address.
type verifying struct {
	r    io.Reader
	h    hash.Hash
	want string
	left int64
	err  error // the refusal returned, if any: a store's client may not wrap it
	done bool  // the end was reached and the hash matched
}

// check reads what a store's client left unread (a client that stops at
// the size it was given never sees the end) and returns the verdict.
func (v *verifying) check() error {
	if !v.done && v.err == nil {
		if _, err := io.Copy(io.Discard, v); err != nil && v.err == nil {
			return err
		}
	}
	return v.err
}

func newVerifying(r io.Reader, hash string, size int64) *verifying {
	return &verifying{r: io.LimitReader(r, size+1), h: sha256.New(), want: hash, left: size}
}

func (v *verifying) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.left -= int64(n)
	if v.left < 0 {
		v.err = fmt.Errorf("vault: blob longer than its size: %w", ErrHashMismatch)
		return n, v.err
	}
	if err == io.EOF {
		if v.left != 0 {
			v.err = fmt.Errorf("vault: blob shorter than its size: %w", io.ErrUnexpectedEOF)
			return n, v.err
		}
		if hex.EncodeToString(v.h.Sum(nil)) != v.want {
			v.err = fmt.Errorf("vault: blob: %w", ErrHashMismatch)
			return n, v.err
		}
		v.done = true
	}
	return n, err
}

// DirBlobs keeps blobs as files under a directory, fanned out by the
// first two hex digits: the embedded default, in the data directory.
type DirBlobs struct{ dir string }

// NewDirBlobs returns a store in dir, creating it.
func NewDirBlobs(dir string) (*DirBlobs, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("vault: blob directory: %w", err)
	}
	return &DirBlobs{dir: dir}, nil
}

func (d *DirBlobs) path(hash string) (string, error) {
	if !hashPattern.MatchString(hash) {
		return "", fmt.Errorf("vault: blob address %q: %w", hash, ErrInvalid)
	}
	return filepath.Join(d.dir, hash[:2], hash), nil
}

func (d *DirBlobs) Put(ctx context.Context, hash string, size int64, r io.Reader) error {
	p, err := d.path(hash)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("vault: blob directory: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".put-*")
	if err != nil {
		return fmt.Errorf("vault: blob: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename, a no-op
	v := newVerifying(r, hash, size)
	_, err = io.Copy(f, v)
	if err == nil {
		err = v.check()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("vault: blob: %w", err)
	}
	return nil
}

func (d *DirBlobs) Get(ctx context.Context, hash string) (io.ReadCloser, error) {
	p, err := d.path(hash)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("vault: blob %s: %w", hash, ErrNotFound)
	}
	return f, err
}

func (d *DirBlobs) Walk(ctx context.Context, fn func(hash string) error) error {
	return filepath.WalkDir(d.dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() && hashPattern.MatchString(e.Name()) {
			return fn(e.Name())
		}
		return nil
	})
}

func (d *DirBlobs) Delete(ctx context.Context, hash string) error {
	p, err := d.path(hash)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("vault: blob: %w", err)
	}
	return nil
}
