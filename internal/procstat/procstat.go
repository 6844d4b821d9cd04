// Package procstat reads process state from /proc, for the tools and tests that stop a
// node with SIGSTOP and must know when it really is stopped.
package procstat

import (
	"bytes"
	"fmt"
	"os"
)

// AllStopped reports whether every thread of process pid is stopped (state T). It is
// false while any thread still runs, and where /proc cannot tell (another OS, no such
// process). SIGSTOP stops the threads one by one: a caller that needs the whole process
// stopped (its sockets unread, its timers not firing) polls this.
func AllStopped(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			return false
		}
		// pid (comm) state ...: comm may hold spaces and parens, so look after the last ')'
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
			return false
		}
	}
	return true
}
