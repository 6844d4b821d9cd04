#!/usr/bin/env python3
"""CPU of switchboard processes by role, around one node's death (docs/BENCHMARKS.md,
"A whole node's reconnection storm").

  cpu-roles.py sample BIN SECONDS INTERVAL OUT   every INTERVAL s for SECONDS s, append to OUT
                                                  one line: seconds since start, then
                                                  role=user_ticks/system_ticks for each role
  cpu-roles.py report OUT ROLE                    the cores each role used before and after
                                                  ROLE's processes were gone

A process counts when it runs the executable BIN (/proc/PID/exe). Roles: "nodeN" for
`serve ... --node-id N`, "serve" for a node without one, and the bench scenario for
`bench SCENARIO` ("connect", "failover", ...; "worker" for the processes `--procs`
starts). Ticks of a role are summed over its processes, so a role's figure drops when one
of its processes exits; report leaves out roles that are not in both samples it compares.
"""
import os
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")


def role(cmd):
    if len(cmd) < 2:
        return None
    if cmd[1] == "bench" and len(cmd) > 2:
        return cmd[2]
    if cmd[1] == "serve":
        for i, a in enumerate(cmd[:-1]):
            if a == "--node-id":
                return "node" + cmd[i + 1]
        return "serve"
    return None


def sample(binpath, secs, interval, out):
    exe = os.path.realpath(binpath)
    t0 = time.monotonic()
    with open(out, "a") as f:
        while time.monotonic() - t0 < secs:
            now = time.monotonic() - t0
            agg = {}
            for p in os.listdir("/proc"):
                if not p.isdigit():
                    continue
                try:
                    if os.readlink("/proc/%s/exe" % p).removesuffix(" (deleted)") != exe:
                        continue
                    with open("/proc/%s/cmdline" % p, "rb") as c:
                        cmd = [a.decode(errors="replace") for a in c.read().split(b"\0") if a]
                    r = role(cmd)
                    if r is None:
                        continue
                    with open("/proc/%s/stat" % p) as s:
                        st = s.read()
                except OSError:  # the process exited meanwhile
                    continue
                fields = st[st.rfind(")") + 2:].split()
                u, k = agg.get(r, (0, 0))
                agg[r] = (u + int(fields[11]), k + int(fields[12]))
            f.write("%.3f %s\n" % (now, " ".join("%s=%d/%d" % (r, u, k) for r, (u, k) in sorted(agg.items()))))
            f.flush()
            time.sleep(interval)


def load(path):
    rows = []
    for line in open(path):
        f = line.split()
        if not f:
            continue
        d = {}
        for kv in f[1:]:
            k, v = kv.split("=")
            u, s = v.split("/")
            d[k] = (int(u), int(s))
        rows.append((float(f[0]), d))
    return rows


def cores(a, b, seconds):
    """Per role in both samples: (user, system) cores used from sample a to sample b."""
    return {k: ((b[k][0] - a[k][0]) / HZ / seconds, (b[k][1] - a[k][1]) / HZ / seconds) for k in b if k in a}


def report(path, gone):
    rows = load(path)
    at = next((i for i in range(1, len(rows)) if gone in rows[i - 1][1] and gone not in rows[i][1]), None)
    if at is None:
        sys.exit("cpu-roles: %s never went away in %s" % (gone, path))
    t0, base = rows[at - 1]
    print("cpu by role: %s gone between %.2f and %.2f s of sampling; cores (user+system) per window" % (gone, t0, rows[at][0]))

    def line(label, a, b, secs):
        c = cores(a, b, secs)
        nodes = sum(u + s for k, (u, s) in c.items() if k.startswith("node") or k == "serve")
        gen = sum(u + s for k, (u, s) in c.items() if k in ("connect", "worker"))
        rest = ", ".join("%s %.2f+%.2f" % (k, u, s) for k, (u, s) in sorted(c.items()))
        print("cpu by role: %-22s all %.2f, nodes %.2f, bench connect %.2f | %s" % (
            label, sum(u + s for u, s in c.values()), nodes, gen, rest))

    before = [i for i in range(at) if rows[i][0] <= t0 - 5]
    if before:
        i = before[-1]
        line("5 s before", rows[i][1], base, t0 - rows[i][0])
    def last_by(t):
        after = [i for i in range(at - 1, len(rows)) if rows[i][0] <= t]
        return after[-1]

    for lo, hi in ((0, 2), (0, 4), (4, 8)):
        i, j = last_by(t0 + lo), last_by(t0 + hi)
        if rows[j][0] <= rows[i][0]:
            break
        line("%.2f-%.2f s after" % (rows[i][0] - t0, rows[j][0] - t0), rows[i][1], rows[j][1], rows[j][0] - rows[i][0])


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "sample":
        sample(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
    elif len(sys.argv) == 4 and sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
