#!/usr/bin/env python3
"""Turn criterion's saved estimates into Markdown tables of GFLOP/s and ratios.

Usage: python3 benches/summarize.py [--peak1 GFLOPS] [--peak2 GFLOPS] [groups...]  (--help)
Reads target/criterion/<group>/<function>/<shape>/new/{estimates,benchmark}.json;
shapes are m x k x n, throughput = 2*m*n*k flops / median time.
"""
import argparse, datetime, glob, json, math, os, platform, sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "criterion")

def fail(message):
    """One line on stderr and exit status 2: no traceback for a user's mistake."""
    print(f"summarize.py: {message}", file=sys.stderr)
    sys.exit(2)

def available_groups():
    if not os.path.isdir(root):
        return []
    return sorted(g for g in os.listdir(root) if os.path.isdir(os.path.join(root, g)) and g != "report")

def parse_args():
    p = argparse.ArgumentParser(
        description="Markdown tables (GFLOP/s, ratios to the peers, % of peak; µs and images/s "
                    "for the infer group) from criterion's saved results in target/criterion.",
        epilog="Run a bench first, e.g. `cargo bench --bench gemm -- sgemm_1t`; the FMA peaks come "
               "from `cargo run --release --example peak`.")
    p.add_argument("groups", nargs="*", help="bench groups (default: every group with results), "
                   "e.g. sgemm_1t sgemm_2t dense_forward infer")
    p.add_argument("--peak1", type=float, metavar="GFLOPS", help="one-core FMA peak, for a %% of peak column")
    p.add_argument("--peak2", type=float, metavar="GFLOPS", help="two-core FMA peak (groups named *2t*)")
    a = p.parse_args()
    have = available_groups()
    if not have:
        fail("no bench results in target/criterion: run `cargo bench` (for example "
             "`cargo bench --bench gemm -- sgemm_1t`) first")
    missing = [g for g in a.groups if g not in have]
    if missing:
        fail(f"no results for group {', '.join(missing)}; groups with results: {', '.join(have)}")
    return a, a.groups or have

def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith(("model name", "Model", "CPU part")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()

def isa_of_this_cpu():
    """The ISA densekit picks here by default (DENSEKIT_ISA can force another)."""
    forced = os.environ.get("DENSEKIT_ISA")
    if forced:
        return f"{forced} (DENSEKIT_ISA)"
    if platform.machine() in ("aarch64", "arm64"):
        return "neon"
    try:
        flags = next((l for l in open("/proc/cpuinfo") if l.startswith("flags")), "").split()
    except OSError:
        flags = []
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags and "fma" in flags:
        return "avx2"
    return "scalar"

def header(groups):
    """CPU, ISA and when the results were measured (their files' newest time)."""
    stamps = [os.path.getmtime(f) for g in groups
              for f in glob.glob(os.path.join(root, g, "**", "new", "estimates.json"), recursive=True)]
    when = datetime.datetime.fromtimestamp(max(stamps)).strftime("%Y-%m-%d %H:%M") if stamps else "unknown"
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; ISA: {isa_of_this_cpu()}; measured {when}")

args, groups = parse_args()
peaks = {"--peak1": args.peak1, "--peak2": args.peak2}
peaks = {k: v for k, v in peaks.items() if v}
header(groups)

def gflops(group, func, shape):
    d = os.path.join(root, group, func, shape, "new")
    try:
        est = json.load(open(os.path.join(d, "estimates.json")))
    except FileNotFoundError:
        return None
    m, k, n = dims(shape)
    return 2 * m * n * k / est["median"]["point_estimate"]  # flops per ns == GFLOP/s

def dims(shape):
    """m, k, n of a label like 784x32x256 or 784x32x256-acol (A column-major)."""
    return tuple(int(x) for x in shape.split("-")[0].split("x"))

def key(shape):
    m, k, n = dims(shape)
    return (m != k or k != n, "-" in shape, m * k * n)

def median_us(group, func, shape):
    try:
        est = json.load(open(os.path.join(root, group, func, shape, "new", "estimates.json")))
    except FileNotFoundError:
        return None
    return est["median"]["point_estimate"] / 1000.0

def dense_table(group):
    gdir = os.path.join(root, group)
    funcs = sorted(f for f in os.listdir(gdir) if os.path.isdir(os.path.join(gdir, f)) and f != "report")
    shapes = sorted({s for f in funcs for s in os.listdir(os.path.join(gdir, f)) if s != "report"},
                    key=lambda s: tuple(int(x) for x in s.split("x"))[::-1])
    bare = "bare_gemm" if "bare_gemm" in funcs else "bare_gemms"
    acts = sorted({f.split("_", 1)[1] for f in funcs if f.startswith("fused_")})
    print(f"\n### {group} (median µs; shapes batch×in×out)\n")
    head = ["shape", bare] + [x for a in acts for x in (f"fused {a}", f"unfused {a}", f"fused/bare {a}", f"unfused/fused {a}")]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for s in shapes:
        b = median_us(group, bare, s)
        row = [s.replace("x", "×"), f"{b:.1f}" if b else "–"]
        for a in acts:
            f, u = median_us(group, f"fused_{a}", s), median_us(group, f"unfused_{a}", s)
            row += [f"{f:.1f}" if f else "–", f"{u:.1f}" if u else "–",
                    f"{f / b:.2f}×" if f and b else "–", f"{u / f:.2f}×" if f and u else "–"]
        print("| " + " | ".join(row) + " |")

# Flops per image of the infer bench's 784-256-10 network.
INFER_FLOPS = 2 * (784 * 256 + 256 * 10)

def infer_table(group):
    gdir = os.path.join(root, group)
    funcs = sorted(f for f in os.listdir(gdir) if os.path.isdir(os.path.join(gdir, f)) and f != "report")
    batches = sorted({int(b) for f in funcs for b in os.listdir(os.path.join(gdir, f)) if b.isdigit()})
    print(f"\n### {group} (784-256-10; median µs per call, images/s, GFLOP/s)\n")
    print("| inputs, threads, form | " + " | ".join(f"batch {b}" for b in batches) + " |")
    print("|" + "---|" * (len(batches) + 1))
    for f in funcs:
        row = [f.replace("_", ", ")]
        for b in batches:
            us = median_us(group, f, str(b))
            row.append(f"{us:.2f} µs, {b / us * 1e6:,.0f}/s, {INFER_FLOPS * b / us / 1e3:.0f}" if us else "–")
        print("| " + " | ".join(row) + " |")

for group in groups:
    gdir = os.path.join(root, group)
    if group == "infer":
        infer_table(group)
        continue
    if group.startswith("dense_"):
        dense_table(group)
        continue
    funcs = sorted(f for f in os.listdir(gdir) if os.path.isdir(os.path.join(gdir, f)) and f != "report")
    shapes = sorted({s for f in funcs for s in os.listdir(os.path.join(gdir, f)) if s != "report"}, key=key)
    peak = peaks.get("--peak2" if "2t" in group else "--peak1")
    print(f"\n### {group} (GFLOP/s, median)\n")
    head = ["shape m×k×n"] + funcs
    peers = [p for p in ("matrixmultiply", "openblas") if p in funcs and "densekit" in funcs]
    head += [f"densekit / {p}" for p in peers]
    if peak: head.append("densekit % of peak")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    ratios = {p: [] for p in peers}
    for s in shapes:
        vals = {f: gflops(group, f, s) for f in funcs}
        row = [s.replace("x", "×")] + [f"{vals[f]:.1f}" if vals[f] else "–" for f in funcs]
        for p in peers:
            if vals.get("densekit") and vals.get(p):
                r = vals["densekit"] / vals[p]; ratios[p].append((s, r))
                row.append(f"{r:.2f}×")
            else:
                row.append("–")
        if peak:
            row.append(f"{100 * vals['densekit'] / peak:.0f}%" if vals.get("densekit") else "–")
        print("| " + " | ".join(row) + " |")
    for p, rs in ratios.items():
        if rs:
            g = math.exp(sum(math.log(r) for _, r in rs) / len(rs))
            low = min(rs, key=lambda x: x[1])
            print(f"\nGeometric mean densekit / {p} over {len(rs)} shapes: {g:.2f}×; "
                  f"lowest {low[1]:.2f}× ({low[0]})")
