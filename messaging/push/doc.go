// Package push wakes a device that has no live stream with a web push
// (RFC 8030) whose payload is encrypted for the device (RFC 8291) and
// signed for by the deployment's VAPID key (RFC 8292).
//
// A push carries no content and no sender: only an opaque wake-up. The
// device learns what arrived by connecting to its mailbox. Work runs from a
// durable queue in the database, one job per device, so pushes for one
// device coalesce, a restart loses none, and message delivery never waits
// for a push service. See docs/push.md for the design and what a push
// service can and cannot see.
package push
