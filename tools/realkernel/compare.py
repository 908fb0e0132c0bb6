#!/usr/bin/env python3
"""Hold the simulator against the real kernel's measurements (issue 18; docs/fidelity.md).

usage: tools/realkernel/compare.py [--highpte BIN] [--data DIR] [--quick]

For each checked-in real-kernel run (crates/highpte/tests/data/realkernel/*.json) it runs the
same program on the simulator -- 8 GB, 1 CPU, a parent that maps a shared anonymous region
and writes it, then N children that each read and write every page and pause -- as a
generated workload file, with `highpte run FILE --json`, and prints the figures side by side
with the relative error. `nohigh` (the kernel booted with userpte=nohigh: user pte pages in
low memory) is the simulator's `64g` configuration; `highpte` (as shipped) is `64g-highpte`.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def workload(config, region_mb, children):
    forks = "".join(
        f'  {{ op = "fork", child_phase = "child", as = "c{i}" }},\n' for i in range(children)
    )
    return f"""name = "ptmeasure-{config}-{region_mb}M-{children}"
[machine]
config = "{config}"
ram = "8G"
cpus = 1
[[phases]]
name = "parent"
ops = [
  {{ op = "mmap", len = "{region_mb}M", prot = "PROT_READ|PROT_WRITE", flags = ["MAP_SHARED", "MAP_ANONYMOUS"], as = "region" }},
  {{ op = "touch", addr = "region", len = "{region_mb}M", write = true, expect = "ok" }},
{forks}  {{ op = "pause" }},
]
[[phases]]
name = "child"
run_by = "children"
ops = [
  {{ op = "touch", addr = "region", len = "{region_mb}M" }},
  {{ op = "touch", addr = "region", len = "{region_mb}M", write = true }},
  {{ op = "pause" }},
]
"""


def simulate(binary, config, region_mb, children):
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(workload(config, region_mb, children))
        path = f.name
    try:
        out = subprocess.run([binary, "run", path, "--json", "--quiet"], capture_output=True)
        if not out.stdout:
            sys.exit(f"highpte run failed: {out.stderr.decode()}")
        return json.loads(out.stdout)
    finally:
        os.unlink(path)


def children_alive(sim, text):
    """Children forked before the parent's first failing op (the generated file's fork ops
    are one per line, in order), or all of them if nothing failed."""
    lines = text.splitlines()
    first = next(i for i, l in enumerate(lines, 1) if '"fork"' in l)
    total = sum('"fork"' in l for l in lines)
    f = sim.get("first_failure")
    if not f or f.get("process") != 0 or not str(f.get("call", "")).startswith("fork at "):
        return total - (sim.get("counters", {}).get("oom_kills", 0))
    line = int(str(f["call"]).rsplit(":", 2)[-2])
    return line - first


def real_at(doc, n):
    for s in doc["steps"]:
        if s["phase"] == "step" and s["children"] == n:
            return s
    return None


def real_phase(doc, phase):
    return next(s for s in doc["steps"] if s["phase"] == phase)


def err(sim, real):
    return "-" if not real else f"{100.0 * (sim - real) / real:+.1f}%"


def row(what, real, sim):
    print(f"| {what} | {real:,} | {sim:,} | {err(sim, real)} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--highpte", default=os.path.join(REPO, "target/release/highpte"))
    ap.add_argument("--data", default=os.path.join(REPO, "crates/highpte/tests/data/realkernel"))
    ap.add_argument("--n", type=int, default=64, help="children for the per-process figures")
    ap.add_argument("--breaking-point", action="store_true",
                    help="also run the nohigh 1 GB ramp to exhaustion (minutes)")
    a = ap.parse_args()
    print("| figure | real Linux 6.1 | simulator (2.5 profile) | error |")
    print("|:--|--:|--:|--:|")
    for mode, config in (("nohigh", "64g"), ("highpte", "64g-highpte")):
        for region in (256, 1024):
            path = os.path.join(a.data, f"{mode}-{region}M.json")
            if not os.path.exists(path):
                continue
            doc = json.load(open(path))
            n = a.n
            r0 = real_phase(doc, "parent")["meminfo"]
            rb = real_phase(doc, "boot")["meminfo"]
            rn = real_at(doc, n)
            if rn is None:
                continue
            rn = rn["meminfo"]
            s0 = simulate(a.highpte, config, region, 0)["meminfo"]
            sn = simulate(a.highpte, config, region, n)["meminfo"]
            tag = f"{mode}, {region} MB"
            if region == 256 and mode == "nohigh":
                row("LowTotal (kB)", rb["LowTotal"], s0["LowTotal"])
                row("HighTotal (kB)", rb["HighTotal"], s0["HighTotal"])
            row(f"{tag}: LowFree before the children (kB)", r0["LowFree"], s0["LowFree"])
            row(f"{tag}: LowFree with {n} children (kB)", rn["LowFree"], sn["LowFree"])
            row(f"{tag}: low memory per child (B)",
                round(1024 * (r0["LowFree"] - rn["LowFree"]) / n),
                round(1024 * (s0["LowFree"] - sn["LowFree"]) / n))
            row(f"{tag}: PageTables per child (B)",
                round(1024 * (rn["PageTables"] - r0["PageTables"]) / n),
                round(1024 * (sn["PageTables"] - s0["PageTables"]) / n))
    if a.breaking_point:
        doc = json.load(open(os.path.join(a.data, "nohigh-1024M.json")))
        real = doc["stop"]["children"]
        sim = simulate(a.highpte, "64g", 1024, 2000)
        alive = children_alive(sim, workload("64g", 1024, 2000))
        row("nohigh, 1 GB: children alive when low memory runs out", real, alive)
        f = sim["first_failure"] or {}
        print(f"\nsimulator: stopped by {f.get('call')} ({f.get('errno_or_signal')}), "
              f"LowFree {f.get('LowFree')} kB")


if __name__ == "__main__":
    main()
