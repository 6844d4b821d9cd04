package tuning

// RecommendedBacklog is the listen and SYN backlog deploy/sysctl.d sets and Check
// recommends for every node (net.core.somaxconn, net.ipv4.tcp_max_syn_backlog).
const RecommendedBacklog = recSomaxconn

// Backlogs are the kernel's accept and SYN backlogs (Unknown when unreadable).
type Backlogs struct {
	Somaxconn, SynBacklog int64
}

// ReadBacklogs reads the two backlog sysctls under paths.Proc: two small files, cheap
// enough for serve's start (ReadHost also asks a shell for the soft open-file limit).
func ReadBacklogs(paths HostPaths) Backlogs {
	return Backlogs{
		Somaxconn:  readFirstInt(paths.sysctl("net.core.somaxconn")),
		SynBacklog: readFirstInt(paths.sysctl("net.ipv4.tcp_max_syn_backlog")),
	}
}

// Low reports whether either backlog is known and below RecommendedBacklog: a reconnect
// storm past it is dropped, and a flood of silent connections past it reaches the node
// through SYN cookies instead of waiting in the kernel (docs/SECURITY.md).
func (b Backlogs) Low() bool {
	return b.Somaxconn != Unknown && b.Somaxconn < recSomaxconn ||
		b.SynBacklog != Unknown && b.SynBacklog < recSynBacklog
}
