package client

import (
	"context"
	"crypto/x509"
	"fmt"

	"github.com/kanal-server/kanal/miniapps/forms"
)

// Verified fetches the template version id@version ("latest" for the
// newest) from the catalogue and checks it on this device, not trusting
// the server: its signature and certificate chain, with its lineage,
// against the deployment CA root the device was enrolled under (and the
// deployment's issuing intermediates); that it is id@version; that org
// published it (a form of another office is not this office's); and, when
// hash is given, that it is the version a form request or submission
// named. A withdrawn version is refused unless withdrawn is set (an agent
// reading a case opened before the withdrawal).
//
// kanal form request|fill, kanal cases and the web app all fetch
// templates through it.
func (c *Client) Verified(ctx context.Context, org, id, version, hash string, withdrawn bool, root *x509.Certificate, intermediates ...*x509.Certificate) (*forms.Template, error) {
	e, err := c.Get(ctx, id, version, withdrawn)
	if err != nil {
		return nil, fmt.Errorf("the form %s %s: %w", id, version, err)
	}
	v, err := forms.Verify(e.Signed, root, intermediates...)
	if err != nil {
		return nil, fmt.Errorf("the form %s %s does not verify: %w", id, version, err)
	}
	t := v.Template
	switch {
	case t.ID != id || version != "latest" && t.Version != version:
		return nil, fmt.Errorf("the catalogue answered %s %s for %s %s: refused", t.ID, t.Version, id, version)
	case hash != "" && t.Hash() != hash:
		return nil, fmt.Errorf("the form %s %s in the catalogue is not the one named (hash %s, named %s): refused", id, version, t.Hash(), hash)
	case t.Org.ID != org || v.Membership.OrgID != org:
		return nil, fmt.Errorf("the form %s %s is not published by %s: refused", id, t.Version, org)
	}
	return t, nil
}
