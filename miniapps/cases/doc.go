// Package cases is an organisation's case inbox: each form submission
// opens a case, which the organisation's agents assign and move through
// its statuses (received → in progress → needs information → decided)
// until it is decided, with a due date from the template's processing
// time.
//
// The server holds only a case's metadata — its organisation and citizen,
// the template (id, version, hash) it was filled from, its status,
// assignee and due date, and the history of those. The answers, the
// attachments and the agents' internal notes travel end to end
// (messaging/kind's form.submission and case.note) and never reach it.
// Every change is announced to the citizen and the agents in their
// conversation; kanald wires the announcement to messaging's notices and
// a template's fee to payments, which this package does not import.
package cases
