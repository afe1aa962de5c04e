-- The SHA-256 fingerprint (hex) of the deployment CA certificate, recorded
-- by the first node that starts; every later node must hold the same CA.
ALTER TABLE deployment ADD COLUMN ca_fingerprint TEXT NOT NULL DEFAULT '';
