package translog

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/keys/transparency"
)

// Problem types of the log's routes.
var (
	TypeNotInLog = web.NewType("not-in-log") // a size, index or tile beyond the log
)

// Routes lists the public routes Register adds: none needs authentication,
// since the log is public for anyone to check. POST /v1/log/cosignatures
// is authenticated by what it carries: only a configured witness's key
// makes a cosignature the log stores.
func (l *Log) Routes() []string {
	return []string{
		"GET /v1/log/key",
		"GET /v1/log/checkpoint",
		"GET /v1/log/proof/inclusion",
		"GET /v1/log/proof/consistency",
		"GET /v1/log/entries",
		"GET /v1/log/tile/{path...}",
		"POST /v1/log/cosignatures",
		"GET /v1/log/witnesses",
		"GET /v1/log/witness/checkpoint",
		"GET /v1/log/lookup",
	}
}

// Register adds the log's routes to mux.
func (l *Log) Register(mux *http.ServeMux) {
	hs := []func(http.ResponseWriter, *http.Request) error{l.handleKey, l.handleCheckpoint, l.handleInclusion, l.handleConsistency, l.handleEntries, l.handleTile,
		l.handleCosignatures, l.handleWitnesses, l.handleWitnessCheckpoint, l.handleLookup}
	for i, pattern := range l.Routes() {
		h := hs[i]
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if err := h(w, r); err != nil {
				var p *web.Problem
				if errors.As(err, &p) {
					web.WriteError(w, r, err)
					return
				}
				if errors.Is(err, ErrRange) || errors.Is(err, ErrNotFound) {
					web.WriteError(w, r, web.Errorf(http.StatusNotFound, TypeNotInLog, "Not in the log", "%s", strings.TrimPrefix(err.Error(), "translog: ")))
					return
				}
				l.log.ErrorContext(r.Context(), "translog", "request_id", web.RequestID(r.Context()), "route", r.Pattern, "err", err)
				web.WriteError(w, r, err)
			}
		})
	}
}

func badParam(format string, args ...any) error {
	return web.Errorf(http.StatusBadRequest, web.TypeValidation, "Invalid parameter", format, args...)
}

// intParam reads a required non-negative decimal query parameter, given
// exactly once.
func intParam(r *http.Request, name string) (int64, error) {
	vs := r.URL.Query()[name]
	if len(vs) != 1 {
		return 0, badParam("%s must be given once", name)
	}
	n, err := strconv.ParseInt(vs[0], 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != vs[0] {
		return 0, badParam("%s must be a non-negative decimal number", name)
	}
	return n, nil
}

// onlyParams refuses query parameters other than names.
func onlyParams(r *http.Request, names ...string) error {
	for k := range r.URL.Query() {
		ok := false
		for _, n := range names {
			ok = ok || k == n
		}
		if !ok {
			return badParam("unknown parameter %q", k)
		}
	}
	return nil
}

func writeText(w http.ResponseWriter, body []byte, cache bool) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if cache {
		w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(cacheSeconds)+", immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	w.Write(body)
}

func (l *Log) handleKey(w http.ResponseWriter, r *http.Request) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	writeText(w, []byte(l.vkey+"\n"), false)
	return nil
}

func (l *Log) handleCheckpoint(w http.ResponseWriter, r *http.Request) error {
	if err := onlyParams(r, "size"); err != nil {
		return err
	}
	if _, ok := r.URL.Query()["size"]; ok {
		n, err := intParam(r, "size")
		if err != nil {
			return err
		}
		msg, err := l.CheckpointAt(r.Context(), n)
		if errors.Is(err, ErrNotFound) {
			return web.Errorf(http.StatusNotFound, TypeNotInLog, "No such checkpoint", "the log signed no checkpoint of size %d", n)
		}
		if err != nil {
			return err
		}
		writeText(w, msg, false)
		return nil
	}
	msg, err := l.latestNote(r.Context())
	if errors.Is(err, ErrNotFound) {
		return web.Errorf(http.StatusNotFound, TypeNotInLog, "Empty log", "the log has no entries yet")
	}
	if err != nil {
		return err
	}
	writeText(w, msg, false)
	return nil
}

func (l *Log) handleInclusion(w http.ResponseWriter, r *http.Request) error {
	if err := onlyParams(r, "index", "size"); err != nil {
		return err
	}
	index, err := intParam(r, "index")
	if err != nil {
		return err
	}
	n, err := intParam(r, "size")
	if err != nil {
		return err
	}
	if index >= n {
		return badParam("index must be below size")
	}
	p, err := l.InclusionProof(r.Context(), index, n)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(cacheSeconds))
	web.WriteJSON(w, http.StatusOK, transparency.InclusionProof{Index: index, Size: n, Hashes: transparency.EncodeHashes(p)})
	return nil
}

func (l *Log) handleConsistency(w http.ResponseWriter, r *http.Request) error {
	if err := onlyParams(r, "old", "new"); err != nil {
		return err
	}
	m, err := intParam(r, "old")
	if err != nil {
		return err
	}
	n, err := intParam(r, "new")
	if err != nil {
		return err
	}
	if m > n {
		return badParam("old must not be above new")
	}
	p, err := l.ConsistencyProof(r.Context(), m, n)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(cacheSeconds))
	web.WriteJSON(w, http.StatusOK, transparency.ConsistencyProof{Old: m, New: n, Hashes: transparency.EncodeHashes(p)})
	return nil
}

func (l *Log) handleEntries(w http.ResponseWriter, r *http.Request) error {
	if err := onlyParams(r, "start", "count"); err != nil {
		return err
	}
	start, err := intParam(r, "start")
	if err != nil {
		return err
	}
	count, err := intParam(r, "count")
	if err != nil {
		return err
	}
	if count < 1 || count > MaxEntriesPerRequest {
		return badParam("count must be 1 to %d", MaxEntriesPerRequest)
	}
	es, err := l.Entries(r.Context(), start, count)
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, transparency.Entries{Entries: es})
	return nil
}

// handleTile serves a hash tile in sumdb's layout (tlog.Tile paths, height
// TileHeight): full tiles and partial ones that the newest signed tree
// covers. Data tiles (level "data") are not served: the entries route
// gives the entries.
func (l *Log) handleTile(w http.ResponseWriter, r *http.Request) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	t, err := tlog.ParseTilePath("tile/" + r.PathValue("path"))
	if err != nil || t.H != TileHeight {
		return badParam("not a tile path of height %d (tile/%d/<level>/<index>[.p/<width>])", TileHeight, TileHeight)
	}
	if t.L < 0 {
		return web.Errorf(http.StatusNotFound, TypeNotInLog, "No data tiles", "data tiles are not served; GET /v1/log/entries gives the entries")
	}
	size, err := l.Size(r.Context())
	if err != nil {
		return err
	}
	// The tile's last hash at its level must be in the tree of the newest
	// signed size.
	need := (t.N<<uint(t.H) + int64(t.W)) << uint(t.L*t.H)
	if need > size {
		return web.Errorf(http.StatusNotFound, TypeNotInLog, "Tile beyond the log", "the log's newest signed size %d does not cover this tile", size)
	}
	data, err := tlog.ReadTileData(t, l.reader(r.Context()))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(cacheSeconds)+", immutable")
	w.Write(data)
	return nil
}
