package ca

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// OIDArc is kanal's OID arc. kanal has no IANA private enterprise number, so
// under ITU-T X.667 it names itself with a UUID: the arc is 2.25 followed by
// the UUID read as one unsigned 128-bit integer. The UUID was generated once,
// at random (version 4), for this purpose and must never change:
//
//	19405fc1-3ded-4171-8ef2-1e86ee2851fd = 33564949032682248019483070840288334333
//
// Sub-arcs: OIDArc.1 holds certificate attribute types. Further numbers are
// assigned here only.
const OIDArc = "2.25.33564949032682248019483070840288334333"

// Attribute types carried in the subjectDirectoryAttributes extension of
// kanal certificates. Each attribute has exactly one value.
const (
	// OIDLevelOfAssurance: ENUMERATED { low(1), substantial(2), high(3) },
	// in device certificates.
	OIDLevelOfAssurance = OIDArc + ".1.1"
	// OIDOrgKind: ENUMERATED { office(1), council(2), merchant(3) }, in
	// organisation certificates.
	OIDOrgKind = OIDArc + ".1.2"
	// OIDOrgRole: UTF8String, the member's role, in membership certificates.
	OIDOrgRole = OIDArc + ".1.3"
)

// oidSubjectDirectoryAttributes is id-ce-subjectDirectoryAttributes from
// RFC 5280. kanal's attributes travel inside it rather than as extensions of
// their own because Go's certificate parser refuses extension OIDs with
// components wider than 31 bits, and every OID under a 2.25 arc has a
// 128-bit component. Attribute types inside the extension are parsed by this
// package, which compares their DER encodings.
var oidSubjectDirectoryAttributes = asn1.ObjectIdentifier{2, 5, 29, 9}

// DER contents (without tag and length) of the attribute type OIDs.
var (
	derLevelOfAssurance = mustOIDContents(OIDLevelOfAssurance)
	derOrgKind          = mustOIDContents(OIDOrgKind)
	derOrgRole          = mustOIDContents(OIDOrgRole)
)

func mustOIDContents(s string) string {
	oid, err := x509.ParseOID(s)
	if err != nil {
		panic("ca: bad built-in OID " + s)
	}
	b, err := oid.MarshalBinary()
	if err != nil {
		panic("ca: bad built-in OID " + s)
	}
	return string(b)
}

// attribute is one kanal attribute: its type's OID contents and the DER
// encoding (tag, length, contents) of its single value.
type attribute struct {
	oid   string
	value []byte
}

func enumAttribute(oid string, v int64) attribute {
	var b cryptobyte.Builder
	b.AddASN1Enum(v)
	return attribute{oid: oid, value: b.BytesOrPanic()}
}

func utf8Attribute(oid, s string) attribute {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
	return attribute{oid: oid, value: b.BytesOrPanic()}
}

// marshalAttributes encodes SubjectDirectoryAttributes ::= SEQUENCE SIZE
// (1..MAX) OF Attribute, with Attribute ::= SEQUENCE { type OID, values SET
// OF value }. RFC 5280 requires the extension to be non-critical.
func marshalAttributes(attrs ...attribute) (pkix.Extension, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, a := range attrs {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.OBJECT_IDENTIFIER, func(b *cryptobyte.Builder) { b.AddBytes([]byte(a.oid)) })
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(a.value) })
			})
		}
	})
	der, err := b.Bytes()
	if err != nil {
		return pkix.Extension{}, fmt.Errorf("ca: encode attributes: %w", err)
	}
	return pkix.Extension{Id: oidSubjectDirectoryAttributes, Critical: false, Value: der}, nil
}

// parseAttributes returns the attributes of cert keyed by type OID contents.
// Attributes of other arcs are returned too and ignored by callers; a
// repeated type or a type with other than one value is malformed.
func parseAttributes(cert *x509.Certificate) (map[string]cryptobyte.String, error) {
	var ext *pkix.Extension
	for i := range cert.Extensions {
		if cert.Extensions[i].Id.Equal(oidSubjectDirectoryAttributes) {
			if ext != nil {
				return nil, fmt.Errorf("%w: repeated attributes extension", ErrMalformed)
			}
			ext = &cert.Extensions[i]
		}
	}
	if ext == nil {
		return nil, fmt.Errorf("%w: no kanal attributes", ErrMalformed)
	}
	if ext.Critical {
		return nil, fmt.Errorf("%w: critical attributes extension", ErrMalformed)
	}
	in := cryptobyte.String(ext.Value)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() || seq.Empty() {
		return nil, fmt.Errorf("%w: bad attributes extension", ErrMalformed)
	}
	attrs := make(map[string]cryptobyte.String)
	for !seq.Empty() {
		var attr, oid, set, value cryptobyte.String
		var tag cbasn1.Tag
		if !seq.ReadASN1(&attr, cbasn1.SEQUENCE) ||
			!attr.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) ||
			!attr.ReadASN1(&set, cbasn1.SET) || !attr.Empty() ||
			!set.ReadAnyASN1Element(&value, &tag) || !set.Empty() {
			return nil, fmt.Errorf("%w: bad attribute", ErrMalformed)
		}
		if _, dup := attrs[string(oid)]; dup {
			return nil, fmt.Errorf("%w: repeated attribute", ErrMalformed)
		}
		attrs[string(oid)] = value
	}
	return attrs, nil
}

func readEnumAttribute(attrs map[string]cryptobyte.String, oid string) (int, bool) {
	v, ok := attrs[oid]
	if !ok {
		return 0, false
	}
	var n int
	if !v.ReadASN1Enum(&n) || !v.Empty() {
		return 0, false
	}
	return n, true
}

func readUTF8Attribute(attrs map[string]cryptobyte.String, oid string) (string, bool) {
	v, ok := attrs[oid]
	if !ok {
		return "", false
	}
	var s cryptobyte.String
	if !v.ReadASN1(&s, cbasn1.UTF8String) || !v.Empty() {
		return "", false
	}
	return string(s), true
}
