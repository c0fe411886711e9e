#!/usr/bin/env python3
"""Turn criterion's saved estimates into Markdown tables of GFLOP/s and ratios.

Usage: python3 benches/summarize.py [--peak1 GFLOPS] [--peak2 GFLOPS] [groups...]
Reads target/criterion/<group>/<function>/<shape>/new/{estimates,benchmark}.json;
shapes are m x k x n, throughput = 2*m*n*k flops / median time.
"""
import json, math, os, sys

root = os.path.join(os.path.dirname(__file__), "..", "target", "criterion")
args = sys.argv[1:]
peaks = {}
for flag in ("--peak1", "--peak2"):
    if flag in args:
        i = args.index(flag); peaks[flag] = float(args[i + 1]); del args[i:i + 2]
groups = args or sorted(g for g in os.listdir(root) if os.path.isdir(os.path.join(root, g)) and g != "report")

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
