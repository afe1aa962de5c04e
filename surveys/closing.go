package surveys

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"time"
)

// Early closing.
//
// A survey closes at its definition's closes_at, or earlier when the
// organiser says so: the device that signed the definition signs a
// Closing, kanald records it (from then on ballots are refused) and
// serves it with the survey and every board page. The tally key may leave
// the organiser's device only after closes_at or after the device has
// seen its own closing recorded (MayPublish).

// closingContext separates closing statements from definitions and
// anything else a device key signs.
const closingContext = "kanal survey closing v1\x00"

// MaxClosingSkew bounds how far a closing's time may be from kanald's
// clock when it is recorded.
const MaxClosingSkew = 5 * time.Minute

// Closing is the organiser's statement "this survey is closed now".
type Closing struct {
	Version  int       `json:"version"` // 1
	SurveyID string    `json:"survey_id"`
	ClosedAt time.Time `json:"closed_at"`
}

// SignedClosing is a Closing as signed, sent, stored and served: the
// exact statement bytes and the device signature over
// "kanal survey closing v1\0" ‖ statement.
type SignedClosing struct {
	Closing   json.RawMessage `json:"closing"`
	Signature []byte          `json:"signature"`
}

// SignClosing makes the closing statement of survey id at now with the
// key of the device that signed its definition.
func SignClosing(id string, now time.Time, key crypto.Signer) (*SignedClosing, error) {
	body, err := json.Marshal(Closing{Version: 1, SurveyID: id, ClosedAt: now.UTC().Truncate(time.Second)})
	if err != nil {
		return nil, err
	}
	sig, err := signDevice(key, append([]byte(closingContext), body...))
	if err != nil {
		return nil, fmt.Errorf("surveys.closing: %w", err)
	}
	return &SignedClosing{Closing: body, Signature: sig}, nil
}

// VerifyClosing checks a closing statement against the signed definition
// it closes: it names the survey, falls between opening and closing, and
// is signed by the definition's device. The signature is over the compact
// form of the statement (as for definitions), which is also how kanald
// stores and serves it.
func VerifyClosing(s *Signed, d *Definition, c *SignedClosing) (*Closing, error) {
	var compact bytes.Buffer
	if err := json.Compact(&compact, c.Closing); err != nil {
		return nil, invalidf("closing: %v", err)
	}
	body := compact.Bytes()
	var cl Closing
	if err := strictJSON(body, &cl); err != nil {
		return nil, invalidf("closing: %v", err)
	}
	if cl.Version != 1 || cl.SurveyID != d.SurveyID {
		return nil, invalidf("closing: version 1 of survey %s expected", d.SurveyID)
	}
	if cl.ClosedAt.Before(d.OpensAt) || !cl.ClosedAt.Before(d.ClosesAt) {
		return nil, invalidf("closing: closed_at must lie between opens_at and closes_at")
	}
	// The definition's chain is verified by whoever holds it (Verify,
	// Service.Define); here only its device key matters.
	dev, err := x509.ParseCertificate(s.Device)
	if err != nil {
		return nil, fmt.Errorf("%w: closing: device certificate: %v", ErrBadSignature, err)
	}
	if !verifyDevice(dev.PublicKey, append([]byte(closingContext), body...), c.Signature) {
		return nil, fmt.Errorf("%w: closing is not signed by the device that signed the definition", ErrBadSignature)
	}
	return &cl, nil
}

// MayPublish reports whether the tally private key may leave the
// organiser's device at now (the device's own clock): after the
// definition's closes_at, or after a closing signed by the definition's
// device whose time has passed. It is checked on the device before any
// request that carries the key.
func MayPublish(s *Signed, d *Definition, closing *SignedClosing, now time.Time) error {
	if !now.Before(d.ClosesAt) {
		return nil
	}
	if closing != nil {
		cl, err := VerifyClosing(s, d, closing)
		if err != nil {
			return err
		}
		if !now.Before(cl.ClosedAt) {
			return nil
		}
	}
	return fmt.Errorf("%w: survey %s closes at %s (this device's clock says %s); the tally key stays on this device until then, or close it early with 'kanal survey close'",
		ErrNotClosed, d.SurveyID, d.ClosesAt.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
}
