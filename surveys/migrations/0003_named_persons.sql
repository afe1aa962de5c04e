-- A named survey whose audience is level high takes one ballot per proven
-- person, not per account. survey_named_persons holds, per such survey,
-- who has cast, as the survey's pseudonym of the person:
-- hex(SHA-256("kanal survey person v1" 0x00 survey id 0x00 identity)),
-- where identity is identity's keyed hash of the eID subject. It names no
-- account and no board entry, so it adds nothing to what the public board
-- of a named survey already says; a person who moves their eID to another
-- account finds their row there and is refused a second ballot.
CREATE TABLE survey_named_persons (
	survey_id TEXT NOT NULL REFERENCES surveys (id),
	person    TEXT NOT NULL,
	PRIMARY KEY (survey_id, person)
);
