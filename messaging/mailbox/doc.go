// Package mailbox keeps one durable, ordered queue of envelopes per device
// and delivers it over a websocket: first the backlog in order, then live
// envelopes, each acknowledged by the device and deleted after the ack.
//
// The database is the truth and the bus only wakes: after a send commits,
// the sender's node publishes a wake-up for each recipient device on NATS;
// whichever node holds that device's socket reads the mailbox after the
// last sequence number it sent. A lost wake-up delays delivery until the
// next one or the next reconnect, and never loses an envelope. Delivery is
// at least once; clients remove duplicates by envelope id.
package mailbox
