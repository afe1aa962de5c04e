// Package miniapps is kanal's mini-app platform: the registry of
// organisations' web apps (manifests signed by a member's device,
// approved by the operator), the citizens' per-scope consents, an OpenID
// Provider (built on zitadel/oidc's op package) that signs citizens in to
// the apps with pairwise subjects after a kanal device login, launch
// tokens for apps opened from a conversation, and the bridge through which
// an app's backend asks for a payment, posts into the conversation or
// sends a form request — each behind its consented scope.
//
// miniapps imports no sibling domain: payments, the chat and forms are
// reached through the Bridge interfaces that cmd/kanald wires.
package miniapps
