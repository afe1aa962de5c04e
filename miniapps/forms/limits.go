package forms

// Limits of templates, answers and the catalogue, in one place.
const (
	MaxTemplate        = 256 << 10 // bytes of a template's JSON
	MaxSigned          = 1 << 20   // bytes of a signed template with its lineage
	MaxAnswers         = 64 << 10  // bytes of a submission's answers
	MaxFields          = 200       // schema properties (and layout fields) per template
	MaxPages           = 30
	MaxAttachments     = 20         // declared attachments per template
	MaxAttachmentBytes = 50 << 20   // the largest size limit a template may declare
	MaxMediaTypes      = 10         // per attachment
	MaxStatuses        = 16         // case statuses per template
	MaxProcessingDays  = 366        // the longest processing time
	MaxFeeCents        = 100000000  // EUR 1,000,000.00
	MaxPurpose         = 140        // EPC069-12 remittance information, as payments
	MaxLabel           = 200        // characters of a title or label, per language
	MaxHelp            = 2000       // characters of a help or description text, per language
	MaxIDLength        = 64         // template, field, attachment and status ids
	MaxLineage         = 16         // ancestors a signed template may carry
	MaxBundleTemplates = 100        // templates per bundle
	MaxBundle          = 16 << 20   // bytes of a bundle file
	MaxVersion         = 64         // characters of a semantic version
	MaxListLimit       = 500        // templates per catalogue page
	MaxSchemaDepth     = 32         // nesting of the schema JSON
	MaxHandoffData     = MaxAnswers // bytes of the data a hand-off encrypts
	MaxHandoffTotal    = 200 << 20  // bytes of all attachments of one hand-off
)
