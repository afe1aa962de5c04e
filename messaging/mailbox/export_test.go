package mailbox

import "time"

// SetWakeGrace sets how long a stream seen behind its head after a ping
// waits for the wake-up before it reads its mailbox.
func SetWakeGrace(o *HubOptions, d time.Duration) { o.wakeGrace = d }
