# Sourced by the benchmark scripts. On this VM the hypervisor gives some of the machine's
# CPU to other guests of the host ("steal"), which makes runs of one command differ by 2x;
# every run's figures are read with the steal measured over it.
#
# cpustat: the machine's CPU ticks stolen, and all its CPU ticks (/proc/stat).
# steal_since CPUSTAT: the percentage of the machine's CPU stolen since cpustat printed
# CPUSTAT.
cpustat() { awk '$1 == "cpu" {t = 0; for (i = 2; i <= 9; i++) t += $i; print $9, t; exit}' /proc/stat; }
steal_since() { echo "$1 $(cpustat)" | awk '{d = $4 - $2; printf "%.1f", 100 * ($3 - $1) / (d > 0 ? d : 1)}'; }
