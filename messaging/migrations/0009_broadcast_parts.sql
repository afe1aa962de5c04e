-- A post to many followers is written in parts of a few thousand
-- devices, one transaction each, so that the first followers are woken
-- while the rest are written. The post's first transaction stores the
-- post, its body and the first part's references, and one row here for
-- every other part: the part's follower devices, sorted, separated by
-- single spaces. Writing a part deletes its row in the transaction that
-- writes its references, so a part is written once whoever writes it
-- (the poster, a retry of the post, or a node finishing a post its
-- poster left). No rows here: every post is stored for all its devices.
CREATE TABLE messaging_broadcast_parts (
	post_id    TEXT    NOT NULL,
	part       INTEGER NOT NULL,
	devices    TEXT    NOT NULL,
	created_at BIGINT  NOT NULL,
	PRIMARY KEY (post_id, part)
);
