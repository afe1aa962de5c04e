package main

import (
	"context"
	"strings"
	"time"

	"github.com/kanal-server/kanal/identity/client"
	"github.com/kanal-server/kanal/identity/keystore"
	mclient "github.com/kanal-server/kanal/messaging/client"
	"github.com/kanal-server/kanal/messaging/kind"
)

// The names people see. Wherever kanal shows who someone is, it asks one
// namer: an account by the display name of its profile (received end to
// end, docs/profiles.md), an organisation's agent as "Frau Schmidt ·
// Bürgeramt Worms" (the name the agent gave itself · the organisation's
// name from its CA-signed membership or the directory), an organisation by
// its name. The account id shows only where no name is known, or with -v
// next to the name. A citizen who shared an eID-verified name with an
// organisation is shown to its agents, in that organisation's
// conversations, as "Erika Mustermann ✓eID": the name the deployment's
// notary signed after an eID login at level high, not a name the
// account chose (docs/levels.md).

type namer struct {
	ctx     context.Context
	me      string
	verbose bool
	store   mclient.Store  // where the profiles received are kept
	dir     *client.Client // the directory, for organisations' names; nil: none
	orgs    map[string]string
	now     func() time.Time // for verified names' expiry; nil: time.Now
}

// EIDMark follows a name verified by eID. Display names may not contain
// it (kind.NormalizeDisplayName refuses check marks).
const EIDMark = " ✓eID"

// names returns the namer for this key store; api, if not nil, looks up
// organisations' names in the directory.
func (c *cli) names(ctx context.Context, o *opts, st *keystore.Store, api *client.Client) *namer {
	return &namer{ctx: ctx, me: st.Data.AccountID, verbose: o.verbose || c.verbose, store: mclient.NewKeystoreStore(st), dir: api, orgs: map[string]string{}, now: c.now}
}

// displayName is account's display name, "" if it has none here.
func (n *namer) displayName(account string) string {
	if n == nil || n.store == nil {
		return ""
	}
	p, err := mclient.StoredProfile(n.store, account)
	if err != nil || p == nil {
		return ""
	}
	return p.DisplayName
}

// withID adds id to name with -v, and is id when there is no name.
func (n *namer) withID(name, id string) string {
	switch {
	case name == "":
		return id
	case n != nil && n.verbose:
		return name + " (" + id + ")"
	}
	return name
}

// account is how an account is shown.
func (n *namer) account(id string) string { return n.withID(n.displayName(id), id) }

// citizen is how an account writing to org is shown to org's agents: by
// the eID-verified name it shared with org, while it is valid, else as
// account shows it.
func (n *namer) citizen(id, org string) string {
	if n == nil || n.store == nil || org == "" {
		return n.account(id)
	}
	now := time.Now
	if n.now != nil {
		now = n.now
	}
	v, err := mclient.StoredVerifiedName(n.store, org, id, now())
	if err != nil || v == nil {
		return n.account(id)
	}
	return n.withID(oneLine(v.Name)+EIDMark, id)
}

// agent is how an organisation's agent is shown: its name · the
// organisation's, or the organisation's alone while its name is unknown.
func (n *namer) agent(account, orgName string) string {
	name := orgName
	if d := n.displayName(account); d != "" {
		name = d + kind.NameSeparator + orgName
	}
	return n.withID(name, account)
}

// learnOrg remembers an organisation's name seen in a verified membership.
func (n *namer) learnOrg(id, name string) {
	if n != nil && strings.HasPrefix(id, "org_") && name != "" {
		n.orgs[id] = name
	}
}

// org is how an organisation is shown: its name in the directory.
func (n *namer) org(id string) string {
	if n == nil {
		return id
	}
	name, ok := n.orgs[id]
	if !ok && n.dir != nil {
		if d, err := n.dir.DirectoryOrg(n.ctx, id); err == nil {
			name = oneLine(d.Name)
		}
		n.orgs[id] = name // a failed lookup is not repeated
	}
	return n.withID(name, id)
}

// peer is the other side of a conversation, as parsePeer reads it: an
// account, an organisation, a group, or — with org — a citizen an agent
// answers as that organisation.
func (n *namer) peer(id, org string) string {
	switch {
	case org != "":
		return n.citizen(id, org) + " (as " + n.org(org) + ")"
	case strings.HasPrefix(id, "org_"):
		return n.org(id)
	case strings.HasPrefix(id, "g_"):
		return "group " + id
	}
	return n.account(id)
}

// sender is who wrote a history entry.
func (n *namer) sender(e entry) string {
	switch {
	case e.From == "me" || e.From == "kanal":
		return e.From
	case e.From == n.me:
		return "me (other device)"
	case e.Org != "":
		return n.agent(e.From, e.Org)
	case e.ReplyOrg != "" && e.From == e.Reply:
		return n.citizen(e.From, e.ReplyOrg)
	}
	return n.account(e.From)
}
