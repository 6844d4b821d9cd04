package procstat

import (
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"

	"github.com/switchboard/switchboard/internal/wait"
)

func TestAllStopped(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	if AllStopped(os.Getpid()) {
		t.Fatal("this running test process reads as stopped")
	}
	if AllStopped(1 << 30) {
		t.Fatal("a process that does not exist reads as stopped")
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep command:", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "sleep to be stopped", func() bool { return AllStopped(cmd.Process.Pid) })
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "sleep to run again", func() bool { return !AllStopped(cmd.Process.Pid) })
}
