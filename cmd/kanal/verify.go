package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/kanal-server/kanal/vault/issued"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/kanal-server/kanal/identity/ca"
	"github.com/kanal-server/kanal/miniapps/forms"
	"github.com/kanal-server/kanal/payments/jws"
)

// verifyOpts are the flags of 'kanal verify'.
type verifyOpts struct {
	ca     string
	crl    string
	orgCRL string
	fetch  bool
}

var signupCode = regexp.MustCompile(`^[0-9]{8}$`)

// verifyCommand is 'kanal verify': with an 8-digit code it confirms a
// sign-up (see account.go); with a file it verifies a signed document
// offline.
func verifyCommand() *command {
	var vo verifyOpts
	return &command{
		name: "verify", args: "<code> | <file> --ca ca.pem [--crl crl.pem] [--org-crl org-crl.pem | --fetch]", nargs: 1,
		summary: "confirm the e-mailed code, or verify a signed offer, contract or form template offline",
		help: `With an 8-digit code: confirms the address given to 'kanal register' and
keeps the setup token the server returns (valid for 30 minutes) for
'kanal password' and the first 'kanal device enroll'.

With a file: verifies a signed document without asking any server.
A contract (kanal offer sign) is checked for both signatures, both
certificate chains to the CA given with --ca ('kanal directory ca >
ca.pem'), the seller's membership of the selling organisation, the
buyer's level (substantial or higher), that the buyer signed while the
offer was valid, and that neither device had been revoked when the buyer
signed. Revocation is checked against --crl if given (a list issued at or
after the signature, e.g. 'kanal directory ca --crl > crl.pem'), otherwise
against the certificate statuses the buyer embedded when signing. An offer
is checked for its signature, chain and membership.

The seller's membership is checked against the organisation's own
revocation list of membership certificates, given with --org-crl (from
'kanal directory ca --org-crl ORG > org-crl.pem', issued after the
signature) or fetched from the server with --fetch (which also fetches
the CA's list for --crl). A contract is refused if the membership was
revoked at or before the buyer signed; an offer is refused if its
membership is on the list at all, since an offer's issued_at is chosen by
its signer.

A signed form template ('kanal form show ID@VERSION --out file') is checked
against the CA of the deployment that published it: the signature, the
member's organisation, the template's rules, and its lineage down to the
first version, each ancestor against the CA certificate its child names —
so a template adopted from another deployment shows every organisation
that made a version of it. A form bundle ('kanal form export') is checked
against the exporting deployment's CA. Exit status 0 means it verifies.`,
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.StringVar(&vo.ca, "ca", "", "the deployment CA certificate `file` (PEM)")
			fs.StringVar(&vo.crl, "crl", "", "a revocation list `file` (PEM or DER) issued after the signature")
			fs.StringVar(&vo.orgCRL, "org-crl", "", "the organisation's membership revocation list `file` (PEM or DER)")
			fs.BoolVar(&vo.fetch, "fetch", false, "fetch the current revocation lists from the server")
		},
		run: func(ctx context.Context, c *cli, o *opts, args []string) error {
			if signupCode.MatchString(args[0]) && vo.ca == "" {
				return verify(ctx, c, o, args)
			}
			return verifyFile(ctx, c, o, &vo, args[0])
		},
	}
}

// kinds of signed documents 'kanal verify' knows.
const (
	docOffer    = "offer"
	docContract = "contract"
	docSurvey   = "survey"
	docIssued   = "issued"
	docTemplate = "form template"
	docBundle   = "form bundle"
)

// jwsTyp returns the typ of a compact JWS's protected header, or "".
func jwsTyp(s string) string {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return ""
	}
	hdr, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return ""
	}
	var h struct {
		Typ string `json:"typ"`
	}
	_ = json.Unmarshal(hdr, &h)
	return h.Typ
}

// docKind recognises a document by its content.
func docKind(b []byte) (string, error) {
	s := string(bytes.TrimSpace(b))
	parts := strings.Split(s, ".")
	if len(parts) == 3 {
		hdr, err := base64.RawURLEncoding.DecodeString(parts[0])
		if err == nil {
			var h struct {
				Typ string `json:"typ"`
			}
			if json.Unmarshal(hdr, &h) == nil {
				switch h.Typ {
				case jws.TypeContract:
					return docContract, nil
				case jws.TypeOffer:
					return docOffer, nil
				case issued.Type:
					return docIssued, nil
				case forms.TypeBundle:
					return docBundle, nil
				}
			}
		}
	}
	if isSignedSurvey(b) {
		return docSurvey, nil
	}
	var signed forms.Signed
	if json.Unmarshal(b, &signed) == nil && jwsTyp(signed.JWS) == forms.TypeTemplate {
		return docTemplate, nil
	}
	return "", errors.New("not a document kanal verify knows (a contract, an offer, an issued document or a form bundle JWS, a signed form template, or a signed survey definition)")
}

func verifyFile(ctx context.Context, c *cli, o *opts, vo *verifyOpts, path string) error {
	b, err := readInput(c, path, max(issued.MaxJWS+1024, forms.MaxBundle))
	if err != nil {
		return err
	}
	k, err := docKind(b)
	if err != nil {
		return err
	}
	if vo.ca == "" {
		return &usageError{cmd: "verify", msg: "--ca ca.pem is required to verify a file ('kanal directory ca > ca.pem')"}
	}
	if vo.fetch && (vo.crl != "" || vo.orgCRL != "") {
		return &usageError{cmd: "verify", msg: "give either --fetch or the list files, not both"}
	}
	trust, err := readTrust(vo.ca)
	if err != nil {
		return err
	}
	crl, err := readCRL(vo.crl)
	if err != nil {
		return err
	}
	orgCRL, err := readCRL(vo.orgCRL)
	if err != nil {
		return err
	}
	doc := strings.TrimSpace(string(b))
	roots := trust.pool
	// fetchOrg fetches the lists for the offer's organisation, checked
	// against the organisation certificate in the offer.
	fetchOrg := func(offer *jws.VerifiedOffer) error {
		if !vo.fetch {
			return nil
		}
		api := c.api(o, nil)
		if crl, err = api.CRL(ctx, trust.crlIssuer()); err != nil {
			return err
		}
		orgCRL, err = api.OrgCRL(ctx, offer.Offer.OrgID, offer.OrgCert)
		return err
	}
	switch k {
	case docIssued:
		v, err := issued.Verify(doc, roots)
		if err != nil {
			return err
		}
		d := v.Document
		fmt.Fprintf(c.stdout, "Issued document %s verifies.\n", v.Hash)
		fmt.Fprintf(c.stdout, "  %q (%s, %s, %d bytes), id %s\n", d.Title, d.Kind, d.MediaType, len(d.Content), d.DocumentID)
		fmt.Fprintf(c.stdout, "  issued by %s (%s) to account %s at %s", d.OrgName, d.OrgID, d.Subject, d.IssuedAt.Format(time.RFC3339))
		if !d.ValidUntil.IsZero() {
			fmt.Fprintf(c.stdout, ", valid until %s", d.ValidUntil.Format(time.RFC3339))
		}
		fmt.Fprintf(c.stdout, "\n  signed by device %s of account %s, role %s\n", v.Signed.Device.DeviceID, v.Signed.Device.AccountID, v.Signed.Membership.Role)
		if orgCRL != nil || vo.fetch {
			fmt.Fprintln(c.stdout, "  (membership revocation lists are checked for offers and contracts; for issued documents, see docs/vault.md)")
		}
	case docSurvey:
		return verifySurveyDocument(c, vo.ca, b)
	case docTemplate:
		return verifyTemplate(c, trust, b)
	case docBundle:
		imp, signer, err := forms.ImportBundle(b, trust.root, trust.inters...)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "Bundle verifies: signed by %s (%s), device %s of account %s, %d templates.\n", signer.Membership.OrgName,
			signer.Membership.OrgID, signer.Device.DeviceID, signer.Device.AccountID, len(imp))
		for _, in := range imp {
			printProvenance(c.stdout, in.Verified)
		}
	case docContract:
		if vo.fetch {
			// The offer inside names the organisation whose list is needed.
			ct, err := jws.VerifyContract(doc, jws.VerifyOptions{CA: trust.root, Intermediates: trust.inters})
			if err != nil {
				return err
			}
			if err := fetchOrg(&ct.Offer); err != nil {
				return err
			}
		}
		ct, err := jws.VerifyContract(doc, jws.VerifyOptions{CA: trust.root, Intermediates: trust.inters, CRL: crl, OrgCRL: orgCRL})
		if err != nil {
			return err
		}
		printContract(c.stdout, ct, crl != nil, orgCRL != nil)
	case docOffer:
		offer, err := jws.VerifyOffer(doc, roots)
		if err != nil {
			return err
		}
		if err := fetchOrg(offer); err != nil {
			return err
		}
		if orgCRL != nil {
			if err := offer.CheckOrgCRL(orgCRL); err != nil {
				return err
			}
		}
		printOffer(c.stdout, offer)
		if orgCRL != nil {
			fmt.Fprintln(c.stdout, "Signature and certificates verify, and the seller's membership is not on the organisation's revocation list.")
		} else {
			fmt.Fprintln(c.stdout, "Signature and certificates verify. Membership revocation not checked (give --org-crl or --fetch).")
		}
	}
	return nil
}

// readCRL reads a revocation list file, PEM or DER; "" gives nil.
func readCRL(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if der, err := pemBlock(raw, "X509 CRL"); err == nil {
		return der, nil
	}
	return raw, nil
}

func readInput(c *cli, path string, max int64) ([]byte, error) {
	var r io.Reader
	if path == "-" {
		r = c.stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, max)
	}
	return b, nil
}

// trustFile is a --ca file: the deployment's root first and, for a
// deployment whose root is kept offline, its issuing intermediates after
// it, current first ('kanal directory ca' prints them so). Each
// intermediate must be one the root issued (ca.TrustPool).
type trustFile struct {
	root   *x509.Certificate
	inters []*x509.Certificate
	pool   *x509.CertPool
}

func readTrust(path string) (*trustFile, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := ca.ParseCertificatesPEM(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: want a PEM CERTIFICATE", path)
	}
	pool, err := ca.TrustPool(certs[0], certs[1:])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &trustFile{root: certs[0], inters: certs[1:], pool: pool}, nil
}

// crlIssuer is what signs the deployment's device revocation list: the
// current issuing intermediate, or the root where the root issues.
func (t *trustFile) crlIssuer() *x509.Certificate {
	if len(t.inters) > 0 {
		return t.inters[0]
	}
	return t.root
}

func euro(cents int64) string { return fmt.Sprintf("EUR %d.%02d", cents/100, cents%100) }

func printOffer(w io.Writer, vo *jws.VerifiedOffer) {
	o := vo.Offer
	fmt.Fprintf(w, "Offer %s from %s (%s), to account %s\n", o.OfferID, o.OrgName, o.OrgID, o.BuyerAccount)
	fmt.Fprintf(w, "  signed by device %s of account %s, role %s, at %s\n", vo.SellerDevice.DeviceID, vo.SellerDevice.AccountID,
		vo.Membership.Role, o.IssuedAt.UTC().Format(time.RFC3339))
	for _, it := range o.Items {
		fmt.Fprintf(w, "  %4d × %-40s %14s  VAT %d.%02d %%\n", it.Quantity, it.Description, euro(it.UnitCents), it.VATBasisPoints/100, it.VATBasisPoints%100)
	}
	fmt.Fprintf(w, "  total %s (VAT included: %s), valid until %s\n", euro(o.TotalCents), euro(o.VATCents), o.ValidUntil.UTC().Format(time.RFC3339))
	if o.Terms != "" {
		fmt.Fprintf(w, "  terms: %s\n", oneLine(o.Terms))
	}
}

func printContract(w io.Writer, ct *jws.Contract, givenCRL, givenOrgCRL bool) {
	fmt.Fprintf(w, "Contract %s verifies.\n", ct.ID)
	printOffer(w, &ct.Offer)
	fmt.Fprintf(w, "  countersigned by device %s of account %s (level %s) at %s\n", ct.Buyer.DeviceID, ct.Buyer.AccountID, ct.Buyer.Level,
		ct.SignedAt.UTC().Format(time.RFC3339))
	src := "the certificate statuses embedded at signing"
	if givenCRL {
		src = "the given revocation list"
	}
	fmt.Fprintf(w, "  neither device was revoked at signing time (checked against %s)\n", src)
	if givenOrgCRL {
		fmt.Fprintln(w, "  the seller's membership was not revoked at signing time (checked against the organisation's revocation list)")
	}
}

// verifyTemplate verifies a signed form template offline against the CA
// of the deployment that published it: the signature, the chain, the
// member's organisation, the template's rules, and its lineage down to
// the first version, each ancestor against the CA its child names.
func verifyTemplate(c *cli, trust *trustFile, b []byte) error {
	var s forms.Signed
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := forms.Verify(s, trust.root, trust.inters...)
	if err != nil {
		return err
	}
	t := v.Template
	fmt.Fprintf(c.stdout, "Form template %s %s verifies: %s, hash %s.\n", t.ID, t.Version, t.Title.DE, t.Hash())
	printProvenance(c.stdout, v)
	orgs := map[string]bool{}
	for _, p := range v.Provenance() {
		orgs[p.Membership.OrgName] = true
	}
	fmt.Fprintf(c.stdout, "%d organisations in its provenance, %d versions.\n", len(orgs), len(v.Provenance()))
	return nil
}
