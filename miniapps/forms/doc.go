// Package forms is kanal's first declarative mini-app: form templates, their
// signed catalogue with provenance, and the hand-off of a submission to a
// specialist system (FIT-Connect). It imports neither messaging, surveys
// nor payments; cmd/kanald and cmd/kanal wire it to them.
//
// A template (Template) is the JSON document an office publishes: the
// answers' JSON Schema (2020-12), a layout of pages and fields with labels
// and help in German and English, show/require conditions, attachments with
// media types and size limits, an optional fee, the office's case statuses,
// the processing time and an optional level of assurance. Decode reads one
// strictly (unknown members, a second value, oversize all refused) and
// checks it; the result can check answers:
//
//	t, err := forms.Decode(templateJSON)          // strict, validated, schema compiled
//	errs := t.Check(answersJSON, []forms.AttachmentInfo{{Name: "photo", MediaType: "image/jpeg", Size: 1234}})
//	if errs != nil {                               // *forms.AnswerErrors
//		for _, fe := range errs.Fields { fmt.Println(fe.Field, fe.DE, fe.EN) }
//	}
//	visible := t.Visible(answers)                  // the fields shown for the answers so far
//	h := t.Hash()                                  // "sha256:…" of the canonical (RFC 8785) form
//
// A template version is signed by the device of a member of its
// organisation as a compact JWS (Sign, Verify in sign.go) carrying the
// device, membership and organisation certificates, so anyone holding the
// deployment's CA certificate can check offline who made it. A Signed
// template carries the JWS of its ancestors (Lineage), each with the CA it
// chains to, so a fork made on another deployment keeps its provenance.
// docs/forms.md specifies the format byte by byte.
package forms
