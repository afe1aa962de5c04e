package ca

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// File names LoadOrCreateDir uses inside its directory.
const (
	CertFile = "ca.pem"
	KeyFile  = "ca.key"
)

// LoadOrCreateDir loads the CA kept in dir, or creates one named name and
// saves it there: ca.pem (0644) and ca.key (0600). It refuses a key file that
// group or others may access (ErrKeyPermissions).
//
// Files are written to temporary names and then put in place, the key with
// a hard link that fails if a key already exists, so a crash never leaves a
// half-written key and two racing callers never overwrite each other's key.
// If a crash left ca.key without ca.pem, the next call issues a new root
// certificate over the saved key.
func LoadOrCreateDir(dir, name string, now time.Time) (*CA, bool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("ca: create directory: %w", err)
	}
	keyPath := filepath.Join(dir, KeyFile)
	certPath := filepath.Join(dir, CertFile)

	keyPEM, err := readPrivateFile(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Lstat(certPath); err == nil {
			return nil, false, fmt.Errorf("ca: %s exists without %s; refusing to replace it", certPath, KeyFile)
		}
		c, err := Create(name, now)
		if err != nil {
			return nil, false, err
		}
		keyPEM, err := c.KeyPEM()
		if err != nil {
			return nil, false, err
		}
		if err := writeExclusive(keyPath, keyPEM); err != nil {
			return nil, false, err
		}
		if err := writeReplace(certPath, c.CertPEM(), 0o644); err != nil {
			return nil, false, err
		}
		return c, true, nil
	}
	if err != nil {
		return nil, false, err
	}

	certPEM, err := os.ReadFile(certPath)
	if errors.Is(err, fs.ErrNotExist) {
		key, err := parsePrivateKeyPEM(keyPEM)
		if err != nil {
			return nil, false, err
		}
		if err := checkName(name); err != nil {
			return nil, false, err
		}
		cert, err := selfSign(key, name, now)
		if err != nil {
			return nil, false, err
		}
		c, err := Parse(pemCert(cert.Raw), keyPEM)
		if err != nil {
			return nil, false, err
		}
		if err := writeReplace(certPath, c.CertPEM(), 0o644); err != nil {
			return nil, false, err
		}
		return c, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("ca: read certificate: %w", err)
	}
	c, err := Parse(certPEM, keyPEM)
	if err != nil {
		return nil, false, err
	}
	return c, false, nil
}

const maxKeyFileSize = 64 << 10

// readPrivateFile reads a key file after checking, on the opened file, that
// only its owner may access it.
func readPrivateFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("ca: stat key: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("ca: %s is not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v", ErrKeyPermissions, path, st.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("ca: read key: %w", err)
	}
	if len(b) > maxKeyFileSize {
		return nil, fmt.Errorf("ca: %s too large", path)
	}
	return b, nil
}

// writeTemp writes data to a new 0600 temporary file beside path (created
// with O_EXCL by os.CreateTemp), syncs it and returns its name.
func writeTemp(path string, data []byte, perm fs.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("ca: create temporary file: %w", err)
	}
	name := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(name)
		return "", fmt.Errorf("ca: write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return "", fmt.Errorf("ca: write %s: %w", path, err)
	}
	return name, nil
}

// writeExclusive puts a complete file (mode 0600) at path only if nothing
// is there yet.
func writeExclusive(path string, data []byte) error { return writeExclusiveMode(path, data, 0o600) }

// writeExclusiveMode is writeExclusive with the file's mode.
func writeExclusiveMode(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("ca: install %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// writeReplace atomically replaces path with a complete file.
func writeReplace(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("ca: install %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("ca: sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("ca: sync directory: %w", err)
	}
	return nil
}
