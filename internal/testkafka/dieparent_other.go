//go:build !linux

package testkafka

import "os/exec"

// dieWithParent does nothing where the kernel offers no parent-death
// signal: the test's clean-up still kills the broker.
func dieWithParent(*exec.Cmd) {}
