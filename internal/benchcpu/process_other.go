//go:build !unix

package benchcpu

import "time"

// Process returns 0 where the system has no getrusage (js/wasm, where
// the SDK's packages are vetted but no benchmark runs): "cpu-ns/op" is
// then 0, not a measurement.
func Process() time.Duration { return 0 }
