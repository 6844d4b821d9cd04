package server

import (
	"bytes"
	"io"
	"strings"

	"github.com/VictoriaMetrics/metrics"
)

// writeRuntimeMetrics writes the Go runtime and process metrics of VictoriaMetrics'
// WriteProcessMetrics with a # HELP and # TYPE line before each family. WriteProcessMetrics
// writes bare samples: metadata only when the package-global ExposeMetadata is on, and
// then with an empty HELP, which `promtool check metrics` reports as well. So its output
// goes through a buffer and gets its metadata here.
func writeRuntimeMetrics(w io.Writer) {
	var b bytes.Buffer
	metrics.WriteProcessMetrics(&b)
	annotateFamilies(w, b.Bytes())
}

// annotateFamilies copies the samples of text (Prometheus text format) to w, writing
// HELP and TYPE before the first sample of each family. Comment lines in text are
// dropped. A histogram's _bucket samples and a summary's quantiles, with their _sum and
// _count, are one family; every other sample name is a family of its own.
func annotateFamilies(w io.Writer, text []byte) {
	var cur, curType string
	seen := map[string]bool{}
	for line := range bytes.Lines(text) {
		if len(bytes.TrimSpace(line)) == 0 || line[0] == '#' {
			continue
		}
		name, labels := sampleName(line)
		fam, typ := name, ""
		switch {
		case strings.HasSuffix(name, "_bucket") && strings.Contains(labels, "le="):
			fam, typ = strings.TrimSuffix(name, "_bucket"), "histogram"
		case strings.Contains(labels, "quantile="):
			typ = "summary"
		case (curType == "histogram" || curType == "summary") &&
			(name == cur+"_sum" || name == cur+"_count"):
			fam, typ = cur, curType
		}
		if fam != cur && !seen[fam] {
			help, known := runtimeHelp[fam]
			if typ == "" {
				typ = help.typ
			}
			if !known {
				help.help = fallbackHelp(fam)
			}
			if typ == "" {
				typ = "untyped"
				if strings.HasSuffix(fam, "_total") {
					typ = "counter"
				}
			}
			writeFamily(w, fam, typ, help.help)
			seen[fam] = true
		}
		cur, curType = fam, typ
		_, _ = w.Write(line)
	}
}

// sampleName splits a sample line into its metric name and its label text ("" without
// labels).
func sampleName(line []byte) (name, labels string) {
	end := bytes.IndexAny(line, "{ ")
	if end < 0 {
		return string(bytes.TrimSpace(line)), ""
	}
	name = string(line[:end])
	if line[end] == '{' {
		if close := bytes.IndexByte(line[end:], '}'); close > 0 {
			labels = string(line[end : end+close+1])
		}
	}
	return name, labels
}

// fallbackHelp describes a runtime or process metric this file does not know (a newer
// VictoriaMetrics/metrics may add some): where it comes from, so that it is never
// without help text.
func fallbackHelp(fam string) string {
	switch {
	case strings.HasPrefix(fam, "go_memstats_"):
		return "Go runtime memory statistic (runtime.MemStats), from VictoriaMetrics/metrics."
	case strings.HasPrefix(fam, "go_"):
		return "Go runtime metric (runtime/metrics), from VictoriaMetrics/metrics."
	case strings.HasPrefix(fam, "process_"):
		return "Process metric (/proc), from VictoriaMetrics/metrics."
	}
	return "Metric from VictoriaMetrics/metrics WriteProcessMetrics."
}

type familyHelp struct{ typ, help string }

// runtimeHelp describes the families WriteProcessMetrics writes (v1.45, Linux). A type
// here applies when the sample's shape (bucket, quantile) does not say it.
var runtimeHelp = map[string]familyHelp{
	"go_sched_latencies_seconds":          {"histogram", "Time goroutines spent runnable before running."},
	"go_mutex_wait_seconds_total":         {"counter", "Time goroutines spent blocked on a sync.Mutex or RWMutex."},
	"go_gc_mark_assist_cpu_seconds_total": {"counter", "CPU time goroutines spent assisting the GC."},
	"go_gc_cpu_seconds_total":             {"counter", "CPU time spent on GC."},
	"go_gc_pauses_seconds":                {"histogram", "GC stop-the-world pause latencies."},
	"go_scavenge_cpu_seconds_total":       {"counter", "CPU time spent returning memory to the OS."},
	"go_memlimit_bytes":                   {"gauge", "The Go memory limit (GOMEMLIMIT)."},
	"go_memstats_alloc_bytes":             {"gauge", "Bytes of allocated heap objects."},
	"go_memstats_alloc_bytes_total":       {"counter", "Bytes allocated for heap objects, cumulative."},
	"go_memstats_buck_hash_sys_bytes":     {"gauge", "Bytes in profiling bucket hash tables."},
	"go_memstats_frees_total":             {"counter", "Heap objects freed."},
	"go_memstats_gc_cpu_fraction":         {"gauge", "Fraction of CPU time used by the GC since the program started."},
	"go_memstats_gc_sys_bytes":            {"gauge", "Bytes in GC metadata."},
	"go_memstats_heap_alloc_bytes":        {"gauge", "Bytes of allocated heap objects."},
	"go_memstats_heap_idle_bytes":         {"gauge", "Bytes in idle (unused) heap spans."},
	"go_memstats_heap_inuse_bytes":        {"gauge", "Bytes in in-use heap spans."},
	"go_memstats_heap_objects":            {"gauge", "Allocated heap objects."},
	"go_memstats_heap_released_bytes":     {"gauge", "Bytes of heap returned to the OS."},
	"go_memstats_heap_sys_bytes":          {"gauge", "Bytes of heap memory obtained from the OS."},
	"go_memstats_last_gc_time_seconds":    {"gauge", "Time the last GC finished, in seconds since the Unix epoch."},
	"go_memstats_lookups_total":           {"counter", "Pointer lookups by the runtime."},
	"go_memstats_mallocs_total":           {"counter", "Heap objects allocated."},
	"go_memstats_mcache_inuse_bytes":      {"gauge", "Bytes in mcache structures."},
	"go_memstats_mcache_sys_bytes":        {"gauge", "Bytes of memory obtained from the OS for mcache structures."},
	"go_memstats_mspan_inuse_bytes":       {"gauge", "Bytes in mspan structures."},
	"go_memstats_mspan_sys_bytes":         {"gauge", "Bytes of memory obtained from the OS for mspan structures."},
	"go_memstats_next_gc_bytes":           {"gauge", "Heap size target of the next GC."},
	"go_memstats_other_sys_bytes":         {"gauge", "Bytes in miscellaneous off-heap runtime allocations."},
	"go_memstats_stack_inuse_bytes":       {"gauge", "Bytes in stack spans."},
	"go_memstats_stack_sys_bytes":         {"gauge", "Bytes of stack memory obtained from the OS."},
	"go_memstats_sys_bytes":               {"gauge", "Bytes of memory obtained from the OS."},
	"go_cgo_calls_count":                  {"untyped", "cgo calls made by the process (a counter without the _total suffix)."},
	"go_cpu_count":                        {"untyped", "Logical CPUs usable by the process (a gauge; untyped because promtool reserves _count for histograms and summaries)."},
	"go_gc_duration_seconds":              {"summary", "GC pause durations."},
	"go_gc_forced_count":                  {"untyped", "GC cycles forced by the application (a counter without the _total suffix)."},
	"go_gomaxprocs":                       {"gauge", "GOMAXPROCS."},
	"go_goroutines":                       {"gauge", "Goroutines that exist now."},
	"go_threads":                          {"gauge", "OS threads created by the runtime."},
	"go_info":                             {"gauge", "The Go version, as a label; always 1."},
	"go_info_ext":                         {"gauge", "GOOS and GOARCH, as labels; always 1."},

	"process_cpu_seconds_system_total":              {"counter", "CPU time spent in the kernel."},
	"process_cpu_seconds_total":                     {"counter", "CPU time spent in user and kernel mode."},
	"process_cpu_seconds_user_total":                {"counter", "CPU time spent in user mode."},
	"process_major_pagefaults_total":                {"counter", "Major page faults."},
	"process_minor_pagefaults_total":                {"counter", "Minor page faults."},
	"process_num_threads":                           {"gauge", "OS threads of the process."},
	"process_resident_memory_bytes":                 {"gauge", "Resident memory size."},
	"process_start_time_seconds":                    {"gauge", "Process start time, in seconds since the Unix epoch."},
	"process_virtual_memory_bytes":                  {"gauge", "Virtual memory size."},
	"process_virtual_memory_peak_bytes":             {"gauge", "Peak virtual memory size."},
	"process_resident_memory_peak_bytes":            {"gauge", "Peak resident memory size."},
	"process_resident_memory_anon_bytes":            {"gauge", "Resident anonymous memory."},
	"process_resident_memory_file_bytes":            {"gauge", "Resident file-backed memory."},
	"process_resident_memory_shared_bytes":          {"gauge", "Resident shared memory."},
	"process_io_read_bytes_total":                   {"counter", "Bytes read by the process (read syscalls)."},
	"process_io_written_bytes_total":                {"counter", "Bytes written by the process (write syscalls)."},
	"process_io_read_syscalls_total":                {"counter", "Read syscalls."},
	"process_io_write_syscalls_total":               {"counter", "Write syscalls."},
	"process_io_storage_read_bytes_total":           {"counter", "Bytes read from storage."},
	"process_io_storage_written_bytes_total":        {"counter", "Bytes written to storage."},
	"process_pressure_cpu_waiting_seconds_total":    {"counter", "Time some tasks of the cgroup waited for CPU (PSI)."},
	"process_pressure_cpu_stalled_seconds_total":    {"counter", "Time all tasks of the cgroup stalled for CPU (PSI)."},
	"process_pressure_io_waiting_seconds_total":     {"counter", "Time some tasks of the cgroup waited for I/O (PSI)."},
	"process_pressure_io_stalled_seconds_total":     {"counter", "Time all tasks of the cgroup stalled for I/O (PSI)."},
	"process_pressure_memory_waiting_seconds_total": {"counter", "Time some tasks of the cgroup waited for memory (PSI)."},
	"process_pressure_memory_stalled_seconds_total": {"counter", "Time all tasks of the cgroup stalled for memory (PSI)."},
	"process_cgroup_cpu_throttled_seconds_total":    {"counter", "Time the cgroup was CPU-throttled."},
}
