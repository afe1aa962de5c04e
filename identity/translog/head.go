package translog

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/kanal-server/kanal/keys/transparency"
)

// LogHead makes sure a survey board's head — its survey, length and head
// hash — is in the log, and proves its entry against the newest
// checkpoint. A head logged before is proved again, not logged twice: one
// survey-head entry for each board length that was served. Two different
// heads of the same survey and length in the log are a split view anyone
// reading the log sees. It implements surveys.HeadLog (wired in kanald).
func (l *Log) LogHead(ctx context.Context, survey string, size int64, head []byte) (*transparency.Attachment, error) {
	if size < 0 {
		return nil, fmt.Errorf("translog: negative board length %d", size)
	}
	idx, data, err := findHead(ctx, readerDB{l.db}, survey, size, head)
	if errors.Is(err, ErrNotFound) {
		err = l.db.Tx(ctx, func(tx *sql.Tx) error {
			// Under the append lock, so that nodes serving the same head
			// at once log it once.
			if err := l.db.Lock(ctx, tx, lockKey); err != nil {
				return err
			}
			var ferr error
			idx, data, ferr = findHead(ctx, tx, survey, size, head)
			if !errors.Is(ferr, ErrNotFound) {
				return ferr
			}
			e := transparency.Entry{Version: transparency.V2, Kind: transparency.KindSurveyHead, Survey: survey, Size: uint64(size), Head: head, Time: l.now().Unix()}
			if data, ferr = e.Marshal(); ferr != nil {
				return ferr
			}
			idx, ferr = l.Append(ctx, tx, e)
			return ferr
		})
	}
	if err != nil {
		return nil, err
	}
	return l.Prove(ctx, idx, data)
}

// headsScanned is how many of a survey's newest head entries findHead
// looks through: heads are logged as the board grows, so the one asked
// for is among the newest unless the board moved on meanwhile.
const headsScanned = 8

// findHead returns the entry of survey's head (size, head) among its
// newest head entries.
func findHead(ctx context.Context, q querier, survey string, size int64, head []byte) (int64, []byte, error) {
	rows, err := q.QueryContext(ctx, `SELECT idx, data FROM translog_entries WHERE kind = $1 AND org = $2 ORDER BY idx DESC LIMIT `+fmt.Sprint(headsScanned),
		string(transparency.KindSurveyHead), survey)
	if err != nil {
		return 0, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var idx int64
		var data []byte
		if err := rows.Scan(&idx, &data); err != nil {
			return 0, nil, err
		}
		e, err := transparency.ParseEntry(data)
		if err != nil {
			return 0, nil, fmt.Errorf("translog: stored entry %d: %w", idx, err)
		}
		if e.Size == uint64(size) && bytes.Equal(e.Head, head) {
			return idx, data, nil
		}
	}
	if err := rows.Err(); err != nil {
		return 0, nil, err
	}
	return 0, nil, ErrNotFound
}
