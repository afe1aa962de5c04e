// Package problem names the types of kanal's problem details (RFC 9457,
// "application/problem+json"). The server's HTTP edge (internal/web)
// writes them; the wire packages the SDK imports declare theirs here, so
// that naming a problem type does not bring the server into a client.
package problem

// Type is the stable "type" URI of a problem. Clients branch on it, never
// on the title or detail, so a type is never renamed once released.
type Type string

// prefix makes every kanal problem type a URN: stable, needs no host.
const prefix = "urn:kanal:problem:"

// NewType returns the problem type for a short slug such as "stale-devices".
func NewType(slug string) Type { return Type(prefix + slug) }
