-- PostgreSQL keeps the idempotency rows keyed (sender_device, client_id).
-- SQLite keys them client id first (0009_sends_key.sqlite.sql), which
-- cut its WAL per send by 62 %; here the same change wrote as much WAL per
-- send as before, and a device's revocation would have to read the whole
-- table to delete its rows (docs/benchmarks.md, "Idempotency rows keyed
-- client id first on SQLite").
SELECT 1;
