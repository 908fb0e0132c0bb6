#!/usr/bin/env python3
"""Turn the serial log of one tools/realkernel boot into one JSON document (issue 18).

usage: collect.py SERIAL_LOG MODE REGION_MB KERNEL WALL_SECONDS MEM

Keeps every `HPJSON` line the measurement program printed, parses /proc/meminfo into kB
numbers and /proc/zoneinfo into per-zone figures, and leaves the raw text of the rest.
"""
import json
import re
import sys


def meminfo(text):
    out = {}
    for line in text.splitlines():
        m = re.match(r"(\S+):\s+(\d+)", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def zoneinfo(text):
    zones = {}
    cur = None
    for line in text.splitlines():
        m = re.match(r"Node \d+, zone\s+(\S+)", line)
        if m:
            cur = zones.setdefault(m.group(1), {})
            continue
        if cur is None:
            continue
        t = line.split()
        if len(t) == 2 and t[1].isdigit() and t[0] in (
            "min", "low", "high", "spanned", "present", "managed", "nr_free_pages",
            "nr_page_table_pages", "nr_kernel_stack",
        ):
            cur[t[0]] = int(t[1])
        elif line.strip().startswith("pages free"):
            cur["free"] = int(t[-1])
        elif len(t) == 2 and t[0] in ("count:", "high:", "batch:") and t[1].isdigit():
            # the per-CPU page lists (pagesets): pages on them are neither free (MemFree,
            # LowFree) nor in use; summed over the CPUs
            key = {"count:": "pcp", "high:": "pcp_high", "batch:": "pcp_batch"}[t[0]]
            cur[key] = cur.get(key, 0) + int(t[1]) if key == "pcp" else int(t[1])
        elif line.strip().startswith("protection:"):
            cur["protection"] = [int(x) for x in re.findall(r"\d+", line)]
    return zones


def slabinfo(text):
    """name -> [active_objs, num_objs, objsize, objperslab, pagesperslab]"""
    out = {}
    for line in text.splitlines():
        if line.startswith("slabinfo") or line.startswith("#"):
            continue
        t = line.split()
        if len(t) >= 6 and all(x.isdigit() for x in t[1:6]):
            if int(t[2]) > 0:  # caches with no objects say nothing
                out[t[0]] = [int(x) for x in t[1:6]]
    return out


def numbers(text):
    """`key value` or `Key: value ...` lines -> {key: first integer}"""
    out = {}
    for line in text.splitlines():
        m = re.match(r"([\w()]+):?\s+(-?\d+)", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def main():
    log, mode, region, kernel, wall, mem = sys.argv[1:7]
    steps = []
    start = None
    stop = None
    deaths = []
    with open(log, errors="replace") as f:
        for line in f:
            i = line.find("HPJSON ")
            if i < 0:
                continue
            d = json.loads(line[i + 7:])
            phase = d.get("phase")
            if phase == "start":
                start = d
                continue
            if phase == "stop":
                stop = d
                continue
            if phase == "death":
                deaths.append(d)
                continue
            if "meminfo" in d:
                d["meminfo"] = meminfo(d["meminfo"])
            if "zoneinfo" in d:
                d["zones"] = zoneinfo(d.pop("zoneinfo"))
            if "slabinfo" in d:
                d["slabinfo"] = slabinfo(d["slabinfo"])
            if "vmstat" in d:
                d["vmstat"] = numbers(d["vmstat"])
            if "parent_status" in d:
                d["parent_status"] = numbers(d["parent_status"])
            steps.append(d)
    doc = {
        "highpte_realkernel": 1,
        "kernel_package": kernel,
        "mode": mode,
        "region_mb": int(region),
        "mem": mem,
        "wall_seconds": int(wall),
        "start": start,
        "stop": stop,
        "deaths": deaths,
        "steps": steps,
    }
    # compact, one step per line (readable diffs, small files)
    steps = doc.pop("steps")
    head = json.dumps(doc, separators=(",", ":"))
    sys.stdout.write(head[:-1] + ',"steps":[\n')
    sys.stdout.write(",\n".join(json.dumps(x, separators=(",", ":")) for x in steps))
    sys.stdout.write("\n]}\n")


if __name__ == "__main__":
    main()
