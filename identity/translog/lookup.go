package translog

import (
	"encoding/hex"
	"errors"
	"net/http"
	"strings"

	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/keys/transparency"
)

// handleLookup serves GET /v1/log/lookup?kind=&device=&cert=[&org=]: the
// newest entry of kind about device whose cert field is cert
// ("sha256:" and 64 lower-case hex digits; for memberships of org), with
// the inclusion proof against the newest checkpoint — an Attachment. A
// client that meets a certificate offline (the sender of a first message)
// asks for its entry here. The log is public: the answer tells no more
// than GET /v1/log/entries does.
func (l *Log) handleLookup(w http.ResponseWriter, r *http.Request) error {
	if err := onlyParams(r, "kind", "device", "cert", "org"); err != nil {
		return err
	}
	q := r.URL.Query()
	for _, name := range []string{"kind", "device", "cert"} {
		if len(q[name]) != 1 {
			return badParam("%s must be given once", name)
		}
	}
	if len(q["org"]) > 1 {
		return badParam("org may be given once")
	}
	kind := transparency.Kind(q.Get("kind"))
	switch kind {
	case transparency.KindDevice, transparency.KindIdentityKey, transparency.KindDeviceRevoked:
		if q.Has("org") {
			return badParam("org is only for memberships")
		}
	case transparency.KindMembership, transparency.KindMembershipRevoked:
		if q.Get("org") == "" {
			return badParam("org is required for memberships")
		}
	default:
		return badParam("kind must be device, identity-key, device-revoked, membership or membership-revoked")
	}
	device := q.Get("device")
	if device == "" || len(device) > transparency.MaxIDBytes {
		return badParam("device must be 1 to %d bytes", transparency.MaxIDBytes)
	}
	h, ok := strings.CutPrefix(q.Get("cert"), "sha256:")
	b, err := hex.DecodeString(h)
	var fp transparency.Fingerprint
	if !ok || err != nil || len(b) != len(fp) || hex.EncodeToString(b) != h {
		return badParam("cert must be sha256: and 64 lower-case hex digits")
	}
	copy(fp[:], b)
	a, err := l.Attach(r.Context(), kind, device, fp, q.Get("org"))
	if errors.Is(err, ErrNotFound) {
		return web.Errorf(http.StatusNotFound, TypeNotInLog, "Not in the log", "the log has no %s entry of device %s with this certificate", kind, device)
	}
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-cache")
	web.WriteJSON(w, http.StatusOK, a)
	return nil
}
