-- The catalogue of form templates. Each row is one signed version: the
-- server checked, when it arrived, its signature, chain and lineage
-- against the deployment CA and that the publishing device was a current
-- member of the authoring organisation. signed holds the JSON of
-- forms.Signed (the JWS and its lineage) exactly as published; major,
-- minor and patch order the versions of one id. An id belongs to the
-- organisation that published it first. Templates hold no answers.
CREATE TABLE forms_templates (
	id                TEXT    NOT NULL,
	version           TEXT    NOT NULL,
	major             BIGINT  NOT NULL,
	minor             BIGINT  NOT NULL,
	patch             BIGINT  NOT NULL,
	org_id            TEXT    NOT NULL,
	org_name          TEXT    NOT NULL,
	title_de          TEXT    NOT NULL,
	title_en          TEXT    NOT NULL,
	hash              TEXT    NOT NULL,
	signed            TEXT    NOT NULL,
	publisher_account TEXT    NOT NULL,
	publisher_device  TEXT    NOT NULL,
	published_at      BIGINT  NOT NULL,
	withdrawn_at      BIGINT,
	withdrawn_by      TEXT,
	PRIMARY KEY (id, version)
);
CREATE INDEX forms_templates_org ON forms_templates (org_id, id);
