-- A case is opened by a form submission. The server keeps only what it
-- must act on: whose case it is, which template (id, version, hash) it
-- was filled from, its status, its assigned agent and its due date. The
-- answers, attachments and internal notes travel end to end between the
-- citizen's and the agents' devices and are never stored here.
CREATE TABLE cases (
	id               TEXT    PRIMARY KEY,
	org_id           TEXT    NOT NULL,
	citizen          TEXT    NOT NULL,
	submission_id    TEXT    NOT NULL,
	template_id      TEXT    NOT NULL,
	template_version TEXT    NOT NULL,
	template_hash  TEXT    NOT NULL,
	status           TEXT    NOT NULL CHECK (status IN ('received', 'in_progress', 'needs_information', 'decided')),
	assignee         TEXT    NOT NULL DEFAULT '',
	due_date         TEXT    NOT NULL,
	seq              INTEGER NOT NULL,
	fee_request      TEXT    NOT NULL DEFAULT '',
	created_at       BIGINT  NOT NULL,
	updated_at       BIGINT  NOT NULL,
	UNIQUE (citizen, submission_id)
);
-- The inbox is listed per organisation, newest first, filtered by status
-- or assignee.
CREATE INDEX cases_org ON cases (org_id, created_at, id);
CREATE INDEX cases_org_status ON cases (org_id, status, created_at, id);
CREATE INDEX cases_org_assignee ON cases (org_id, assignee, created_at, id);
CREATE INDEX cases_citizen ON cases (citizen, org_id, status);

-- Every change of a case, in order: who changed what, when.
CREATE TABLE cases_events (
	case_id  TEXT    NOT NULL,
	seq      INTEGER NOT NULL,
	status   TEXT    NOT NULL,
	assignee TEXT    NOT NULL,
	actor    TEXT    NOT NULL,
	at       BIGINT  NOT NULL,
	PRIMARY KEY (case_id, seq)
);

-- The account an organisation's form fees are paid to: the creditor, IBAN
-- and BIC of the payment request a fee's submission opens.
CREATE TABLE cases_fee_accounts (
	org_id     TEXT   PRIMARY KEY,
	creditor   TEXT   NOT NULL,
	iban       TEXT   NOT NULL,
	bic        TEXT   NOT NULL,
	updated_at BIGINT NOT NULL
);
