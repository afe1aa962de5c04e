-- One row: the deployment this database belongs to. Every node that opens the
-- database joins the same deployment; the id names the deployment CA.
CREATE TABLE deployment (
	singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
	id         TEXT    NOT NULL,
	created_at BIGINT  NOT NULL
);
