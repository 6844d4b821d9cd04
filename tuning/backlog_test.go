package tuning

import (
	"path/filepath"
	"testing"
)

func TestReadBacklogs(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  Backlogs
		low   bool
	}{
		{"kernel defaults", map[string]string{
			"proc/sys/net/core/somaxconn":           "4096\n",
			"proc/sys/net/ipv4/tcp_max_syn_backlog": "2048\n",
		}, Backlogs{4096, 2048}, true},
		{"deploy/sysctl.d", map[string]string{
			"proc/sys/net/core/somaxconn":           "65535\n",
			"proc/sys/net/ipv4/tcp_max_syn_backlog": "65535\n",
		}, Backlogs{65535, 65535}, false},
		{"one low", map[string]string{
			"proc/sys/net/core/somaxconn":           "65535\n",
			"proc/sys/net/ipv4/tcp_max_syn_backlog": "2048\n",
		}, Backlogs{65535, 2048}, true},
		{"unreadable: no advice", map[string]string{}, Backlogs{Unknown, Unknown}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{"proc/meminfo": "MemTotal: 1 kB\n"} // a tree even when empty
			for k, v := range tt.files {
				files[k] = v
			}
			dir := writeTree(t, files)
			b := ReadBacklogs(HostPaths{Proc: filepath.Join(dir, "proc")})
			if b != tt.want || b.Low() != tt.low {
				t.Errorf("ReadBacklogs = %+v, Low %v; want %+v, %v", b, b.Low(), tt.want, tt.low)
			}
		})
	}
}
