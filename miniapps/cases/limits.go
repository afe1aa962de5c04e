package cases

// Limits of the cases API.
const (
	MaxBody          = 4 << 10 // a request body
	MaxList          = 500     // cases in one page of the inbox
	DefaultList      = 100
	MaxOpenPerPerson = 50   // undecided cases of one citizen at one organisation
	MaxProcessing    = 3650 // days a template may give for processing
)
