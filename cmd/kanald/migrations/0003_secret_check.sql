-- A value derived from the deployment secret (HKDF label "kanal secret:
-- check v1", hex), recorded by the first node that starts with a secret;
-- every later node must hold the same secret. It reveals nothing of it.
ALTER TABLE deployment ADD COLUMN secret_check TEXT NOT NULL DEFAULT '';
