-- Send rate limits are counted in each node's memory since this version:
-- a counter row per send cost a commit per send, more than the send itself
-- once sends share commits. See messaging/ratelimit.go.
DROP TABLE messaging_send_counters;
