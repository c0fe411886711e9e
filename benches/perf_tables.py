#!/usr/bin/env python3
"""Regenerate PERF.md's measured tables on this machine.

Usage: python3 benches/perf_tables.py [--only gemm,dense,infer] [--dry-run]

Runs `cargo run --release --example peak`, then for each table its bench
(`gemm_peers` with OpenBLAS when libopenblas is installed, `dense` and `infer`
through criterion and benches/summarize.py) and replaces the text between
`<!-- table:NAME -->` and `<!-- /table:NAME -->` in PERF.md with the new
table, headed by the CPU, its measured FMA peak, the date and the command.
The PyTorch comparisons need PyTorch and alternating runs; their commands
are in PERF.md and benches/peers/README.md.
"""
import argparse, datetime, os, re, subprocess, sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PERF = os.path.join(ROOT, "PERF.md")

def sh(cmd):
    """Runs a shell command in the repository; its stdout, or exit with its error."""
    print(f"perf_tables.py: running {cmd}", file=sys.stderr)
    r = subprocess.run(cmd, shell=True, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stderr[-3000:])
        sys.exit(f"perf_tables.py: `{cmd}` failed (exit {r.returncode})")
    return r.stdout

def cpu():
    model, family, number = "unknown CPU", None, None
    try:
        for line in open("/proc/cpuinfo"):
            k, _, v = line.partition(":")
            k, v = k.strip(), v.strip()
            if k == "model name":
                model = v
            elif k == "cpu family" and family is None:
                family = int(v)
            elif k == "model" and number is None:
                number = int(v)
    except OSError:
        pass
    kind = {25: "Zen 3/Zen 4", 26: "Zen 5"}.get(family, "")
    if family == 25:
        kind = "Zen 4" if number is not None and number >= 0x10 else "Zen 3"
    return f"{model} (family {family}, model {number}{', ' + kind if kind else ''}), {os.cpu_count()} logical CPUs"

def peaks():
    out = sh("cargo run --release --example peak")
    p = dict(re.findall(r"f32 FMA peak, (\d+) thread\(s\): ([\d.]+)", out))
    return float(p.get("1", "nan")), float(p.get(str(os.cpu_count()), p.get("2", "nan")))

def has_openblas():
    try:
        return "libopenblas" in subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    except OSError:
        return False

def gemm_table(head):
    feature = " --features openblas" if has_openblas() else ""
    cmd = f"cargo bench --bench gemm_peers{feature}"
    out = sh(cmd)
    keep = [l for l in out.splitlines() if l.startswith(("|", "###", "OpenBLAS", "densekit kernel", "Command")) or not l.strip()]
    return f"{head}, command `{cmd}`\n\n" + "\n".join(keep).strip() + "\n"

def criterion_table(head, bench, filt, groups, p1, p2):
    cmd = f"cargo bench --bench {bench} -- '{filt}'"
    sh(cmd)
    out = sh(f"python3 benches/summarize.py --peak1 {p1} --peak2 {p2} {' '.join(groups)}")
    lines = [l for l in out.splitlines() if not l.startswith("CPU:")]
    return f"{head}, command `{cmd}` then `python3 benches/summarize.py {' '.join(groups)}`\n" + "\n".join(lines) + "\n"

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="gemm,dense,infer", help="comma-separated tables: gemm, dense, infer")
    ap.add_argument("--dry-run", action="store_true", help="print the tables instead of writing PERF.md")
    a = ap.parse_args()
    wanted = [t for t in a.only.split(",") if t]
    unknown = set(wanted) - {"gemm", "dense", "infer"}
    if unknown:
        sys.exit(f"perf_tables.py: no table named {', '.join(sorted(unknown))} (gemm, dense, infer)")
    p1, p2 = peaks()
    head = f"CPU: {cpu()}; FMA peak {p1:.1f} GFLOP/s on one core, {p2:.1f} on all; {datetime.date.today()}"
    tables = {}
    for t in wanted:
        if t == "gemm":
            tables[t] = gemm_table(head)
        elif t == "dense":
            tables[t] = criterion_table(head, "dense", "128x", ["dense_forward", "dense_backward"], p1, p2)
        elif t == "infer":
            tables["inference"] = criterion_table(head, "infer", "infer/(mnist|dense)_(1t|2t)", ["infer"], p1, p2)
    if a.dry_run:
        for t, text in tables.items():
            print(f"<!-- table:{t} -->\n{text}<!-- /table:{t} -->")
        return
    perf = open(PERF).read()
    for t, text in tables.items():
        pattern = re.compile(rf"<!-- table:{t} -->\n.*?<!-- /table:{t} -->", re.S)
        if not pattern.search(perf):
            sys.exit(f"perf_tables.py: PERF.md has no <!-- table:{t} --> … <!-- /table:{t} --> block")
        perf = pattern.sub(lambda _: f"<!-- table:{t} -->\n{text}<!-- /table:{t} -->", perf)
    open(PERF, "w").write(perf)
    print(f"perf_tables.py: wrote {', '.join(tables)} into PERF.md", file=sys.stderr)

if __name__ == "__main__":
    main()
