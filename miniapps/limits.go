package miniapps

import "time"

// Limits of the mini-app registry, the provider and the bridge.
const (
	MaxManifest = 32 << 10 // bytes of a manifest JWS
	MaxName     = 80       // characters of an app's name
	MaxURIs     = 10       // origins, redirect URIs, logout URIs each
	MaxURI      = 2048     // bytes of one URI
	MaxBody     = 64 << 10 // bytes of a request body

	// LaunchTTL is how long a launch token can be used: long enough to
	// open a web page, short enough that one found in a history is dead.
	LaunchTTL = 2 * time.Minute
	// CodeTTL is how long an authorization code or a pending login lasts.
	CodeTTL = 2 * time.Minute
	// AccessTTL and RefreshTTL are the lifetimes of the tokens an app gets.
	AccessTTL  = 10 * time.Minute
	RefreshTTL = 30 * 24 * time.Hour
	// MaxClockSkew is how far a manifest's issued_at may be from the
	// server's clock when it is registered.
	MaxClockSkew = 10 * time.Minute

	// BridgeRate is how many bridge calls an app may make per minute, and
	// BridgeRatePerCitizen how many about one citizen.
	BridgeRate           = 120
	BridgeRatePerCitizen = 10
	// MaxPost is the length of a chat.post message in characters.
	MaxPost = 2000
)
