-- The send path. The mailbox holds the envelopes; these tables only make a
-- send idempotent and rate-limit it.

-- One row per accepted send, keyed by the sending device and the client's
-- own message id. result is the JSON answer of the first accepted attempt,
-- returned as is when the client retries. Rows older than the idempotency
-- window are deleted by later sends of the same device.
CREATE TABLE messaging_sends (
	sender_device TEXT   NOT NULL,
	client_id     TEXT   NOT NULL,
	conversation  TEXT   NOT NULL,
	result        TEXT   NOT NULL,
	created_at    BIGINT  NOT NULL,
	PRIMARY KEY (sender_device, client_id)
);

-- Send counters: one row per sending device and fixed window.
CREATE TABLE messaging_send_counters (
	device_id    TEXT   NOT NULL,
	window_start BIGINT  NOT NULL,
	sends        BIGINT  NOT NULL,
	PRIMARY KEY (device_id, window_start)
);
