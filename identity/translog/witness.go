package translog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/kanal-server/kanal/internal/web"
	"github.com/kanal-server/kanal/keys/transparency"
)

// Problem types of the witness routes.
var (
	TypeCosignatureInvalid = web.NewType("cosignature-invalid") // a cosignature that does not verify, or by no configured witness
	TypeCheckpointUnknown  = web.NewType("checkpoint-unknown")  // a cosigned checkpoint this log did not sign
	TypeNotCosigned        = web.NewType("not-cosigned")        // no checkpoint carries the witness quorum yet
)

// CosignatureRequest is the body of POST /v1/log/cosignatures: the signed
// checkpoint as the witness fetched it, with the witness's cosignature
// line(s) appended.
type CosignatureRequest struct {
	Checkpoint string `json:"checkpoint"`
}

// CosignatureResponse answers POST /v1/log/cosignatures.
type CosignatureResponse struct {
	Size      int64    `json:"size"`
	Witnesses []string `json:"witnesses"` // whose cosignatures were stored
}

// WitnessList answers GET /v1/log/witnesses.
type WitnessList struct {
	Quorum    int      `json:"quorum"`
	Witnesses []string `json:"witnesses"` // verifier keys, name+keyid+base64
}

// maxCosignatureBody bounds POST /v1/log/cosignatures.
const maxCosignatureBody = transparency.MaxCheckpointBytes + 1024

// Witnesses returns the configured witness policy (nil: none).
func (l *Log) Witnesses() *transparency.WitnessPolicy { return l.witnesses }

func (l *Log) witness(name string, id uint32) *transparency.CosignatureVerifier {
	if l.witnesses == nil {
		return nil
	}
	for _, w := range l.witnesses.Witnesses {
		if w.Name() == name && w.KeyID() == id {
			return w
		}
	}
	return nil
}

// AddCosignatures stores the cosignatures carried by msg, a checkpoint
// this log signed with cosignature lines of configured witnesses appended.
// Nothing is stored unless every extra signature line is a valid, not
// future-dated cosignature of a configured witness over exactly the
// checkpoint the log signed at that size.
func (l *Log) AddCosignatures(ctx context.Context, msg []byte) (int64, []string, error) {
	c, n, err := transparency.Open(msg, l.verifier)
	if err != nil {
		return 0, nil, web.Errorf(http.StatusUnprocessableEntity, TypeCheckpointUnknown, "Not this log's checkpoint", "%s", err.Error())
	}
	stored, err := l.CheckpointAt(ctx, c.Size)
	if errors.Is(err, ErrNotFound) {
		return 0, nil, web.Errorf(http.StatusNotFound, TypeCheckpointUnknown, "No such checkpoint", "the log signed no checkpoint of size %d", c.Size)
	}
	if err != nil {
		return 0, nil, err
	}
	body, _, _ := strings.Cut(string(stored), "\n\n")
	if body+"\n" != n.Text {
		return 0, nil, web.Errorf(http.StatusConflict, TypeCheckpointUnknown, "Not the checkpoint this log signed",
			"the log's checkpoint of size %d has another root hash", c.Size)
	}
	if len(n.UnverifiedSigs) == 0 {
		return 0, nil, web.Errorf(http.StatusUnprocessableEntity, TypeCosignatureInvalid, "No cosignature", "the checkpoint carries no cosignature")
	}
	now := l.now()
	type cosig struct {
		witness, line string
		at            int64
	}
	var cs []cosig
	for _, s := range n.UnverifiedSigs {
		w := l.witness(s.Name, s.Hash)
		if w == nil {
			return 0, nil, web.Errorf(http.StatusUnprocessableEntity, TypeCosignatureInvalid, "Unknown witness",
				"%s (key ID %08x) is not a witness of this deployment (GET /v1/log/witnesses)", s.Name, s.Hash)
		}
		t, err := w.Verify([]byte(n.Text), s)
		if err != nil {
			return 0, nil, web.Errorf(http.StatusUnprocessableEntity, TypeCosignatureInvalid, "Cosignature does not verify", "%s", strings.TrimPrefix(err.Error(), "transparency: "))
		}
		if t.After(now.Add(transparency.DefaultCosignatureSkew)) {
			return 0, nil, web.Errorf(http.StatusUnprocessableEntity, TypeCosignatureInvalid, "Cosignature from the future",
				"%s cosigned at %s, ahead of this server's clock by more than %s", s.Name, t.Format("2006-01-02T15:04:05Z"), transparency.DefaultCosignatureSkew)
		}
		if slices.ContainsFunc(cs, func(x cosig) bool { return x.witness == w.Name() }) {
			return 0, nil, web.Errorf(http.StatusUnprocessableEntity, TypeCosignatureInvalid, "Two cosignatures of one witness", "%s cosigned twice", s.Name)
		}
		cs = append(cs, cosig{w.Name(), "— " + s.Name + " " + s.Base64, t.Unix()})
	}
	err = l.db.Tx(ctx, func(tx *sql.Tx) error {
		for _, x := range cs {
			if _, err := tx.ExecContext(ctx, `INSERT INTO translog_cosignatures (size, witness, signature, signed_at, created_at)
				VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (size, witness) DO UPDATE SET signature = excluded.signature, signed_at = excluded.signed_at
				WHERE excluded.signed_at > translog_cosignatures.signed_at`,
				c.Size, x.witness, x.line, x.at, now.Unix()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	names := make([]string, len(cs))
	for i, x := range cs {
		names[i] = x.witness
	}
	return c.Size, names, nil
}

// WitnessCheckpoint returns the newest checkpoint that carries the quorum
// of cosignatures of the configured witnesses, with those cosignatures
// appended. Without witnesses it is the newest checkpoint. ErrNotFound:
// none carries the quorum yet.
func (l *Log) WitnessCheckpoint(ctx context.Context) ([]byte, error) {
	if l.witnesses == nil || l.witnesses.Quorum == 0 {
		return l.latestNote(ctx)
	}
	configured := map[string]bool{}
	for _, w := range l.witnesses.Witnesses {
		configured[w.Name()] = true
	}
	// The sizes the witnesses cosigned most recently, newest first.
	rows, err := l.db.Query(ctx, `SELECT size, witness, signature FROM translog_cosignatures
		WHERE size >= (SELECT COALESCE(MAX(size), 0) FROM translog_cosignatures) - $1 ORDER BY size DESC, witness`, int64(maxCosignedLookback))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var size int64 = -1
	var lines []string
	found := int64(-1)
	var chosen []string
	for rows.Next() {
		var s int64
		var w, line string
		if err := rows.Scan(&s, &w, &line); err != nil {
			return nil, err
		}
		if s != size {
			if len(lines) >= l.witnesses.Quorum {
				break
			}
			size, lines = s, nil
		}
		if configured[w] {
			lines = append(lines, line)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(lines) >= l.witnesses.Quorum {
		found, chosen = size, lines
	}
	if found < 0 {
		return nil, ErrNotFound
	}
	msg, err := l.CheckpointAt(ctx, found)
	if err != nil {
		return nil, fmt.Errorf("translog: cosigned checkpoint %d: %w", found, err)
	}
	return transparency.AddSignatures(msg, chosen...), nil
}

// maxCosignedLookback bounds how many sizes below the newest cosigned one
// WitnessCheckpoint looks at for one that carries the quorum.
const maxCosignedLookback = 100000

func (l *Log) handleCosignatures(w http.ResponseWriter, r *http.Request) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	if l.witnesses == nil || len(l.witnesses.Witnesses) == 0 {
		return web.Errorf(http.StatusUnprocessableEntity, TypeCosignatureInvalid, "No witnesses", "this deployment has no witnesses configured (KANAL_LOG_WITNESSES)")
	}
	var req CosignatureRequest
	if err := web.DecodeJSON(w, r, &req, maxCosignatureBody); err != nil {
		return err
	}
	size, names, err := l.AddCosignatures(r.Context(), []byte(req.Checkpoint))
	if err != nil {
		return err
	}
	l.log.InfoContext(r.Context(), "translog: cosignatures stored", "size", size, "witnesses", names)
	web.WriteJSON(w, http.StatusOK, CosignatureResponse{Size: size, Witnesses: names})
	return nil
}

func (l *Log) handleWitnesses(w http.ResponseWriter, r *http.Request) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	out := WitnessList{Witnesses: []string{}}
	if l.witnesses != nil {
		out.Quorum = l.witnesses.Quorum
		for _, v := range l.witnesses.Witnesses {
			out.Witnesses = append(out.Witnesses, v.String())
		}
	}
	web.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (l *Log) handleWitnessCheckpoint(w http.ResponseWriter, r *http.Request) error {
	if err := onlyParams(r); err != nil {
		return err
	}
	msg, err := l.WitnessCheckpoint(r.Context())
	if errors.Is(err, ErrNotFound) {
		if l.witnesses == nil { // no witnesses: the newest checkpoint, and the log has none yet
			return web.Errorf(http.StatusNotFound, TypeNotCosigned, "Not cosigned yet", "the log has no checkpoint yet")
		}
		return web.Errorf(http.StatusNotFound, TypeNotCosigned, "Not cosigned yet", "no checkpoint carries the cosignatures of %d witnesses yet", l.witnesses.Quorum)
	}
	if err != nil {
		return err
	}
	writeText(w, msg, false)
	return nil
}
