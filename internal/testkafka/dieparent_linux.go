package testkafka

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel kill the broker when the test binary dies
// (a panic, go test's -timeout), so no JVM outlives its test.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
