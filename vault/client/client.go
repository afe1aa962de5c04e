// Package client is the device side of kanal's vault: it encrypts each
// version of a document with a fresh key, wraps that key with HPKE to the
// devices it is given (the account's own, verified by the caller through
// the chat's key directory), encrypts titles, tags and folders with it,
// and talks to the vault API. It also re-wraps keys for a device enrolled
// later, fetches shared documents and issues an office's documents into a
// citizen's vault. See docs/vault.md.
package client

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	idclient "github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/internal/apiclient"
	"github.com/kanal-server/kanal/keys"
	"github.com/kanal-server/kanal/vault"
)

// KeySize is the size of a version's key.
const KeySize = 32

// Domain separation of the three uses of a version's key and of its
// wrapping (docs/vault.md, "Encryption").
const (
	contentAD  = "kanal-vault-content-v1"
	metaAD     = "kanal-vault-meta-v1"
	wrapPrefix = "kanal-vault-key-v1"
)

// ErrTampered is the error for a ciphertext or metadata that does not
// decrypt, or a ciphertext that does not match its recorded hash.
var ErrTampered = errors.New("vault: the document does not decrypt: it was altered or the key is not its own")

// Recipient is a device a key is wrapped to, with its identity key as the
// caller verified it (messaging/client's verified bundles).
type Recipient struct {
	Device string
	Key    keys.IdentityPublic
}

// Unwrapper opens keys wrapped to this device (messaging/client.Client).
type Unwrapper interface {
	UnwrapKey(info, wrapped []byte) ([]byte, error)
}

// Meta is a version's metadata, encrypted with its key.
type Meta struct {
	Title     string   `json:"title"`
	Tags      []string `json:"tags,omitempty"`
	Folder    string   `json:"folder,omitempty"`
	FileName  string   `json:"file_name,omitempty"`
	MediaType string   `json:"media_type,omitempty"`
}

// Options configures a Client.
type Options struct {
	BaseURL  string
	Token    string
	DeviceID string
	Device   Unwrapper
	HTTP     *http.Client // nil: a 5 minute timeout
}

// Client is one device's vault client.
type Client struct {
	base   string
	token  string
	device string
	unwrap Unwrapper
	hc     *http.Client
}

// New returns a Client.
func New(o Options) (*Client, error) {
	if err := apiclient.CheckBase(o.BaseURL); err != nil {
		return nil, err
	}
	if o.DeviceID == "" || o.Device == nil {
		return nil, errors.New("vault/client: DeviceID and Device are required")
	}
	hc := o.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Minute}
	}
	return &Client{base: strings.TrimSuffix(o.BaseURL, "/"), token: o.Token, device: o.DeviceID, unwrap: o.Device, hc: hc}, nil
}

// wrapInfo binds a wrapped key to the ciphertext it opens and the device
// it is for: moved to another version or device, it does not open.
func wrapInfo(sha256Hex, device string) []byte {
	return []byte(wrapPrefix + "\x00" + sha256Hex + "\x00" + device)
}

func seal(key []byte, ad string, plain []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	out := make([]byte, g.NonceSize(), g.NonceSize()+len(plain)+g.Overhead())
	if _, err := io.ReadFull(rand.Reader, out); err != nil {
		return nil, err
	}
	return g.Seal(out, out, plain, []byte(ad)), nil
}

func open(key []byte, ad string, ct []byte) ([]byte, error) {
	if len(key) != KeySize {
		return nil, ErrTampered
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if len(ct) < g.NonceSize()+g.Overhead() {
		return nil, ErrTampered
	}
	plain, err := g.Open(nil, ct[:g.NonceSize()], ct[g.NonceSize():], []byte(ad))
	if err != nil {
		return nil, ErrTampered
	}
	return plain, nil
}

// sealed is one version encrypted on the device.
type sealed struct {
	key     []byte
	content []byte
	req     vault.PutRequest
}

func sealVersion(data []byte, m Meta, to []Recipient) (*sealed, error) {
	if len(to) == 0 {
		return nil, errors.New("vault/client: no device to wrap the key to")
	}
	key := make([]byte, KeySize)
	if _, err := io.ReadFull(rand.Reader, key); err != nil {
		return nil, err
	}
	content, err := seal(key, contentAD, data)
	if err != nil {
		return nil, err
	}
	mj, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	meta, err := seal(key, metaAD, mj)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(content)
	s := &sealed{key: key, content: content, req: vault.PutRequest{SHA256: hex.EncodeToString(sum[:]), Size: int64(len(content)), Meta: meta}}
	for _, r := range to {
		w, err := keys.WrapKey(r.Key, wrapInfo(s.req.SHA256, r.Device), key)
		if err != nil {
			return nil, fmt.Errorf("vault/client: wrap to %s: %w", r.Device, err)
		}
		s.req.Keys = append(s.req.Keys, vault.WrappedKey{Device: r.Device, Wrapped: w})
	}
	return s, nil
}

func (c *Client) do(ctx context.Context, method, path, ctype string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := apiclient.ReadCapped(resp.Body, 1<<20)
		return (*idclient.Problem)(apiclient.ProblemOf(resp, b))
	}
	if w, ok := out.(io.Writer); ok {
		_, err := io.Copy(w, resp.Body)
		return err
	}
	b, err := apiclient.ReadCapped(resp.Body, 64<<20)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := apiclient.DecodeStrict(b, out); err != nil {
		return fmt.Errorf("vault/client: bad answer to %s %s: %w", method, path, err)
	}
	return nil
}

func (c *Client) doJSON(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	ctype := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body, ctype = bytes.NewReader(b), "application/json"
	}
	return c.do(ctx, method, path, ctype, body, out)
}

func (c *Client) upload(ctx context.Context, path string, s *sealed) (*vault.Document, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mj, err := json.Marshal(s.req)
	if err != nil {
		return nil, err
	}
	w, _ := mw.CreateFormField("meta")
	w.Write(mj)
	w, _ = mw.CreateFormFile("content", "content")
	w.Write(s.content)
	if err := mw.Close(); err != nil {
		return nil, err
	}
	var d vault.Document
	if err := c.do(ctx, http.MethodPost, path, mw.FormDataContentType(), &buf, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// Put encrypts data as a new document and stores it, its key wrapped to
// the devices to (which must include this one).
func (c *Client) Put(ctx context.Context, data []byte, m Meta, to []Recipient) (*vault.Document, error) {
	s, err := sealVersion(data, m, to)
	if err != nil {
		return nil, err
	}
	return c.upload(ctx, "/v1/vault/documents", s)
}

// AddVersion encrypts data as a new version of document id.
func (c *Client) AddVersion(ctx context.Context, id string, data []byte, m Meta, to []Recipient) (*vault.Document, error) {
	s, err := sealVersion(data, m, to)
	if err != nil {
		return nil, err
	}
	return c.upload(ctx, "/v1/vault/documents/"+url.PathEscape(id)+"/versions", s)
}

// Issued is a document an office issued: where it is, and its key for the
// document.share message that tells the citizen.
type Issued struct {
	Document *vault.Document
	Key      []byte
	SHA256   string
}

// Issue encrypts data (an office's signed document) into the vault of
// account, as an agent of org, in their conversation; to are the
// citizen's devices.
func (c *Client) Issue(ctx context.Context, org, account, conversation string, data []byte, m Meta, to []Recipient) (*Issued, error) {
	s, err := sealVersion(data, m, to)
	if err != nil {
		return nil, err
	}
	s.req.Org, s.req.Account, s.req.Conversation = org, account, conversation
	d, err := c.upload(ctx, "/v1/vault/issued", s)
	if err != nil {
		return nil, err
	}
	return &Issued{Document: d, Key: s.key, SHA256: s.req.SHA256}, nil
}

// Entry is a document with its newest version's metadata decrypted.
type Entry struct {
	Document vault.Document
	Version  vault.Version
	Meta     Meta
	Err      error // the metadata did not decrypt (no key for this device, or altered)
}

// List returns the account's documents and its usage.
func (c *Client) List(ctx context.Context) ([]Entry, *vault.Usage, error) {
	var l vault.DocumentList
	if err := c.doJSON(ctx, http.MethodGet, "/v1/vault/documents", nil, &l); err != nil {
		return nil, nil, err
	}
	out := make([]Entry, 0, len(l.Documents))
	for _, d := range l.Documents {
		e := Entry{Document: d}
		if len(d.Versions) > 0 {
			e.Version = d.Versions[len(d.Versions)-1]
			e.Meta, e.Err = c.meta(e.Version)
		}
		out = append(out, e)
	}
	return out, &l.Usage, nil
}

// key unwraps a version's key for this device.
func (c *Client) key(v vault.Version) ([]byte, error) {
	if len(v.Key) == 0 {
		return nil, fmt.Errorf("vault/client: no key for this device yet: another device of the account must re-wrap it ('kanal vault rewrap' there)")
	}
	k, err := c.unwrap.UnwrapKey(wrapInfo(v.SHA256, c.device), v.Key)
	if err != nil {
		return nil, fmt.Errorf("%w (%v)", ErrTampered, err)
	}
	return k, nil
}

func (c *Client) meta(v vault.Version) (Meta, error) {
	k, err := c.key(v)
	if err != nil {
		return Meta{}, err
	}
	return decryptMeta(k, v.Meta)
}

func decryptMeta(k, ct []byte) (Meta, error) {
	var m Meta
	plain, err := open(k, metaAD, ct)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(plain, &m); err != nil {
		return m, ErrTampered
	}
	return m, nil
}

// Document returns a document with all its versions (the metadata of each
// decrypted, in order).
func (c *Client) Document(ctx context.Context, id string) (*vault.Document, []Meta, error) {
	var d vault.Document
	if err := c.doJSON(ctx, http.MethodGet, "/v1/vault/documents/"+url.PathEscape(id), nil, &d); err != nil {
		return nil, nil, err
	}
	metas := make([]Meta, len(d.Versions))
	for i, v := range d.Versions {
		metas[i], _ = c.meta(v)
	}
	return &d, metas, nil
}

// VersionKey returns a version's key and ciphertext hash (version 0: the
// newest), for sharing it.
func (c *Client) VersionKey(ctx context.Context, id string, version int) (vault.Version, []byte, Meta, error) {
	d, _, err := c.Document(ctx, id)
	if err != nil {
		return vault.Version{}, nil, Meta{}, err
	}
	v, err := pick(d, version)
	if err != nil {
		return vault.Version{}, nil, Meta{}, err
	}
	k, err := c.key(v)
	if err != nil {
		return v, nil, Meta{}, err
	}
	m, err := decryptMeta(k, v.Meta)
	return v, k, m, err
}

func pick(d *vault.Document, version int) (vault.Version, error) {
	if len(d.Versions) == 0 {
		return vault.Version{}, errors.New("vault/client: the document has no version")
	}
	if version == 0 {
		return d.Versions[len(d.Versions)-1], nil
	}
	for _, v := range d.Versions {
		if v.Version == version {
			return v, nil
		}
	}
	return vault.Version{}, fmt.Errorf("vault/client: document %s has no version %d", d.ID, version)
}

// Get downloads and decrypts a version (0: the newest) of one of the
// account's documents.
func (c *Client) Get(ctx context.Context, id string, version int) ([]byte, Meta, error) {
	v, k, m, err := c.VersionKey(ctx, id, version)
	if err != nil {
		return nil, Meta{}, err
	}
	data, err := c.Fetch(ctx, id, v.Version, k, v.SHA256)
	return data, m, err
}

// Fetch downloads a version's ciphertext, checks it against sha256Hex and
// decrypts it with key: for the owner, and for the recipient of a share,
// who has the key and hash from the document.share message.
func (c *Client) Fetch(ctx context.Context, id string, version int, key []byte, sha256Hex string) ([]byte, error) {
	var buf bytes.Buffer
	if err := c.do(ctx, http.MethodGet, "/v1/vault/documents/"+url.PathEscape(id)+"/versions/"+strconv.Itoa(version)+"/content", "", nil, &buf); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(buf.Bytes())
	if hex.EncodeToString(sum[:]) != sha256Hex {
		return nil, ErrTampered
	}
	return open(key, contentAD, buf.Bytes())
}

// Delete deletes one of the account's documents.
func (c *Client) Delete(ctx context.Context, id string) error {
	return c.doJSON(ctx, http.MethodDelete, "/v1/vault/documents/"+url.PathEscape(id), nil, nil)
}

// Shared is a share made: the record, and what the document.share
// message carries to the recipient (the key, end to end encrypted).
type Shared struct {
	Share *vault.Share
	Key   []byte
	Meta  Meta
}

// Share shares a version (0: the newest) of one of the account's
// documents with an account or an organisation in conversation. The
// caller then sends Key in a document.share message in that conversation.
func (c *Client) Share(ctx context.Context, id string, version int, conversation, account, org string) (*Shared, error) {
	v, k, m, err := c.VersionKey(ctx, id, version)
	if err != nil {
		return nil, err
	}
	var sh vault.Share
	err = c.doJSON(ctx, http.MethodPost, "/v1/vault/documents/"+url.PathEscape(id)+"/shares",
		vault.ShareRequest{Version: v.Version, Conversation: conversation, Account: account, Org: org}, &sh)
	if err != nil {
		return nil, err
	}
	return &Shared{Share: &sh, Key: k, Meta: m}, nil
}

// Unshare withdraws a share.
func (c *Client) Unshare(ctx context.Context, shareID string) (*vault.Share, error) {
	var sh vault.Share
	if err := c.doJSON(ctx, http.MethodDelete, "/v1/vault/shares/"+url.PathEscape(shareID), nil, &sh); err != nil {
		return nil, err
	}
	return &sh, nil
}

// Shares lists the shares made and received (with org: those the
// organisation received).
func (c *Client) Shares(ctx context.Context, org string) (*vault.ShareList, error) {
	p := "/v1/vault/shares"
	if org != "" {
		p += "?org=" + url.QueryEscape(org)
	}
	var l vault.ShareList
	if err := c.doJSON(ctx, http.MethodGet, p, nil, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// Rewrap wraps, for each version the account's other devices lack, this
// device's key again to them: to are the account's devices as the caller
// verified them; a device missing from to is skipped (and stays pending).
// It returns how many keys were added.
func (c *Client) Rewrap(ctx context.Context, to []Recipient) (int, error) {
	var l vault.RewrapList
	if err := c.doJSON(ctx, http.MethodGet, "/v1/vault/rewrap", nil, &l); err != nil {
		return 0, err
	}
	byDevice := map[string]keys.IdentityPublic{}
	for _, r := range to {
		byDevice[r.Device] = r.Key
	}
	shas := map[string]string{}
	var req vault.AddKeysRequest
	for _, p := range l.Pending {
		pub, ok := byDevice[p.Device]
		if !ok {
			continue
		}
		id := p.DocumentID + "/" + strconv.Itoa(p.Version)
		sha, ok := shas[id]
		if !ok {
			d, _, err := c.Document(ctx, p.DocumentID)
			if err != nil {
				return 0, err
			}
			for _, v := range d.Versions {
				shas[p.DocumentID+"/"+strconv.Itoa(v.Version)] = v.SHA256
			}
			sha = shas[id]
		}
		k, err := c.unwrap.UnwrapKey(wrapInfo(sha, c.device), p.Key)
		if err != nil {
			return 0, fmt.Errorf("%w (%v)", ErrTampered, err)
		}
		w, err := keys.WrapKey(pub, wrapInfo(sha, p.Device), k)
		if err != nil {
			return 0, err
		}
		req.Keys = append(req.Keys, vault.AddKey{DocumentID: p.DocumentID, Version: p.Version, Device: p.Device, Wrapped: w})
	}
	if len(req.Keys) == 0 {
		return 0, nil
	}
	var out vault.AddKeysResponse
	if err := c.doJSON(ctx, http.MethodPost, "/v1/vault/keys", req, &out); err != nil {
		return 0, err
	}
	return out.Added, nil
}
