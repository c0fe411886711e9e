#!/usr/bin/env python3
"""Regenerate PERF.md's measured tables on this machine.

Usage: python3 benches/perf_tables.py [--only TABLES] [--rounds N] [--best-seeds 1,2,3] [--dry-run]

Runs `cargo run --release --example peak`, then for each table its
measurement, and replaces the text between `<!-- table:NAME -->` and
`<!-- /table:NAME -->` in PERF.md with the new table, headed by the CPU, its
measured FMA peak, the date and the command. The tables:

  gemm     cargo bench --bench gemm_peers (with OpenBLAS when libopenblas is installed)
  dense    cargo bench --bench dense, through benches/summarize.py
  infer    cargo bench --bench infer, through benches/summarize.py
  pytorch-infer  the packed one-thread inference against benches/peers/pytorch_infer.py,
           alternating, N rounds (needs torch, as below)
  train    train_mnist's default run (N rounds) and --preset lecture
  best     train_mnist --preset best, once per seed (about 5 minutes each on 2 cores)
  pytorch  train_mnist against benches/peers/pytorch_mnist.py, alternating, N rounds
           (needs `pip install torch numpy`; left out with a note when torch is missing)
  threads  benches/threads.py: --threads 1-8, quiet and beside a busy process

Run it on an otherwise idle machine: every table is timed.
"""
import argparse, datetime, json, os, re, statistics, subprocess, sys, time

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

TRAIN_MNIST = os.path.join("target", "release", "train_mnist")
# An epoch line of train_mnist: its number, seconds and samples/s.
EPOCH = re.compile(r"^epoch +(\d+):.*?, ([0-9.]+) s \((\d+) samples/s\)", re.M)
# An epoch line of benches/peers/pytorch_mnist.py.
TORCH_EPOCH = re.compile(r"epoch (\d+): ([0-9.]+) s, (\d+) samples/s")

def train_mnist(flags):
    """Runs the release train_mnist with `flags`; its stdout and wall seconds."""
    start = time.perf_counter()
    out = sh(f"{TRAIN_MNIST} {flags}")
    return out, time.perf_counter() - start

def field(pattern, text, what):
    m = re.search(pattern, text)
    if not m:
        sys.exit(f"perf_tables.py: no {what} in train_mnist's output")
    return m.group(1)

def train_table(head, rounds):
    rows = []
    for _ in range(rounds):
        out, _ = train_mnist("")
        rows.append((
            field(r"test accuracy ([0-9.]+)% after", out, "test accuracy"),
            float(field(r"time: data load ([0-9.]+) s", out, "data load time")),
            float(field(r"training ([0-9.]+) s \(", out, "training time")),
            float(field(r"\(([0-9.]+) s/epoch\)", out, "s/epoch")),
            float(field(r"total ([0-9.]+) s", out, "total time")),
            re.search(r"reached 98% ([0-9.]+) s", out),
        ))
    lecture, _ = train_mnist("--preset lecture")
    lecture_acc = field(r"test accuracy ([0-9.]+)% after", lecture, "test accuracy")
    lecture_sps = statistics.median(int(m[2]) for m in EPOCH.findall(lecture)[1:])
    span = lambda xs, f: f"{f.format(min(xs))}–{f.format(max(xs))}" if min(xs) != max(xs) else f.format(xs[0])
    reached = [float(r[5].group(1)) for r in rows if r[5]]
    lines = [
        f"{head}, commands `{TRAIN_MNIST}` ({rounds} runs) and `{TRAIN_MNIST} --preset lecture`",
        "",
        "| run | test accuracy | data load | training | per epoch | whole run | reached 98% |",
        "|---|---|---|---|---|---|---|",
        f"| default (784-256-10, Adam, 5 epochs), {rounds} runs | {span([r[0] for r in rows], '{}')}% "
        f"| {span([r[1] for r in rows], '{:.2f}')} s | {span([r[2] for r in rows], '{:.2f}')} s "
        f"| {span([r[3] for r in rows], '{:.3f}')} s | {span([r[4] for r in rows], '{:.2f}')} s "
        f"| {span(reached, '{:.1f}') + ' s' if reached else 'not reached'} |",
        f"| `--preset lecture` (784→10, SGD 0.01, batch 32, 20 epochs) | {lecture_acc}% | | | "
        f"{60000 / lecture_sps:.3f} s ({lecture_sps:,} samples/s) | | |",
    ]
    return "\n".join(lines) + "\n"

def best_table(head, seeds):
    lines = [
        f"{head}, command `{TRAIN_MNIST} --preset best --seed S`, one seed after another",
        "",
        "| seed | test accuracy | reached 98% | reached 99% | whole run |",
        "|---|---|---|---|---|",
    ]
    for seed in seeds:
        out, wall = train_mnist(f"--preset best --seed {seed}")
        acc = field(r"test accuracy ([0-9.]+)% after", out, "test accuracy")
        at = {bar: re.search(rf"reached {bar}% ([0-9.]+) s", out) for bar in (98, 99)}
        cell = lambda m: f"{float(m.group(1)):.1f} s" if m else "not reached"
        lines.append(f"| {seed} | {acc}% | {cell(at[98])} | {cell(at[99])} | {wall:.1f} s |")
    return "\n".join(lines) + "\n"

# The PyTorch comparisons: densekit flags, the peer's model, the peer's epochs.
PYTORCH_MODELS = [
    ("784-256-10, Adam lr 0.001, batch 128",
     "--hidden 256 --optimizer adam --lr 0.001 --schedule constant --batch-size 128 --epochs 4 --threads 2",
     "mlp", 4),
    ("784-1024-1024-10, SGD momentum, batch 256",
     "--hidden 1024,1024 --optimizer momentum --lr 0.05 --schedule constant --batch-size 256 --epochs 3 --threads 2",
     "wide", 3),
    ("lecture 784→10, SGD 0.01, batch 32",
     "--preset lecture --threads 2",
     "lecture", 3),
]

def torch_version(table):
    """PyTorch's version, or None (with a note that `table` is left as it was) without it."""
    r = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(f"perf_tables.py: torch is not installed (pip install torch numpy); {table} table left as it was",
              file=sys.stderr)
        return None
    return r.stdout.strip()

def pytorch_table(head, rounds):
    version = torch_version("pytorch")
    if version is None:
        return None
    ratios = {name: [] for name, *_ in PYTORCH_MODELS}
    speeds = {name: ([], []) for name, *_ in PYTORCH_MODELS}
    for _ in range(rounds):
        for name, flags, model, epochs in PYTORCH_MODELS:
            # The first epoch of each side warms caches and pools: left out.
            ours = statistics.median(int(m[2]) for m in EPOCH.findall(train_mnist(flags)[0])[1:])
            torch_out = sh(f"{sys.executable} benches/peers/pytorch_mnist.py --model {model} --epochs {epochs} --threads 2")
            theirs = statistics.median(int(m[2]) for m in TORCH_EPOCH.findall(torch_out)[1:])
            ratios[name].append(ours / theirs)
            speeds[name][0].append(ours)
            speeds[name][1].append(theirs)
    lines = [
        f"{head}; PyTorch {version} on the CPU, both sides on 2 threads, {rounds} alternating rounds "
        "(`train_mnist FLAGS`, then `python3 benches/peers/pytorch_mnist.py --model MODEL --threads 2`; "
        "the flags are in benches/perf_tables.py), median samples/s of the epochs after the first",
        "",
        "| model | densekit samples/s | PyTorch samples/s | densekit ÷ PyTorch (median) | lowest round |",
        "|---|---|---|---|---|",
    ]
    for name, *_ in PYTORCH_MODELS:
        ours, theirs = speeds[name]
        lines.append(f"| {name} | {statistics.median(ours):,.0f} | {statistics.median(theirs):,.0f} "
                     f"| **{statistics.median(ratios[name]):.2f}×** | {min(ratios[name]):.2f}× |")
    return "\n".join(lines) + "\n"

INFER_BATCHES = [1, 8, 32, 256, 1000]

def criterion_median_us(group, func, param):
    path = os.path.join(ROOT, "target", "criterion", group, func, str(param), "new", "estimates.json")
    return json.load(open(path))["median"]["point_estimate"] / 1000.0

def pytorch_infer_table(head, rounds):
    version = torch_version("pytorch-infer")
    if version is None:
        return None
    ours = {(i, b): [] for i in ("mnist", "dense") for b in INFER_BATCHES}
    theirs = {(i, b): [] for i in ("mnist", "dense") for b in INFER_BATCHES}
    bench = "cargo bench --bench infer -- 'infer/(mnist|dense)_1t_packed'"
    for _ in range(rounds):
        sh(bench)
        for inputs in ("mnist", "dense"):
            for b in INFER_BATCHES:
                ours[(inputs, b)].append(criterion_median_us("infer", f"{inputs}_1t_packed", b))
            out = sh(f"{sys.executable} benches/peers/pytorch_infer.py --threads 1 --inputs {inputs}")
            for b, us in re.findall(r"^\| (\d+) \| ([0-9.]+) \|", out, re.M):
                theirs[(inputs, int(b))].append(float(us))
    lines = [
        f"{head}; PyTorch {version} (`inference_mode`), one thread, {rounds} alternating rounds of "
        f"`{bench}` and `python3 benches/peers/pytorch_infer.py --threads 1 --inputs mnist|dense`, "
        "median of each side's medians",
        "",
        "| inputs, 1 thread | " + " | ".join(f"batch {b}" for b in INFER_BATCHES) + " |",
        "|---|" + "---|" * len(INFER_BATCHES),
    ]
    for inputs, label in (("mnist", "MNIST"), ("dense", "dense")):
        med = lambda d, b: statistics.median(d[(inputs, b)])
        lines.append(f"| {label}: densekit packed / PyTorch, µs | "
                     + " | ".join(f"{med(ours, b):.2f} / {med(theirs, b):.2f}" for b in INFER_BATCHES) + " |")
        lines.append(f"| {label}: PyTorch ÷ densekit | "
                     + " | ".join(f"{med(theirs, b) / med(ours, b):.1f}×" for b in INFER_BATCHES) + " |")
    return "\n".join(lines) + "\n"

def threads_table(head, rounds):
    cmd = f"python3 benches/threads.py --rounds {rounds}"
    out = sh(cmd)
    return f"{head}, command `{cmd}`\n\n" + out.strip() + "\n"

TABLES = ["gemm", "dense", "infer", "pytorch-infer", "train", "best", "pytorch", "threads"]

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(TABLES), help=f"comma-separated tables: {', '.join(TABLES)}")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the train, pytorch, pytorch-infer and threads tables")
    ap.add_argument("--best-seeds", default="1,2,3", help="seeds of the --preset best table")
    ap.add_argument("--dry-run", action="store_true", help="print the tables instead of writing PERF.md")
    a = ap.parse_args()
    wanted = [t for t in a.only.split(",") if t]
    unknown = set(wanted) - set(TABLES)
    if unknown:
        sys.exit(f"perf_tables.py: no table named {', '.join(sorted(unknown))} ({', '.join(TABLES)})")
    if set(wanted) & {"train", "best", "pytorch", "threads"}:
        sh("cargo build --release --bin train_mnist")
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
        elif t == "train":
            tables[t] = train_table(head, a.rounds)
        elif t == "best":
            tables[t] = best_table(head, [int(s) for s in a.best_seeds.split(",") if s])
        elif t == "pytorch":
            table = pytorch_table(head, a.rounds)
            if table is not None:
                tables[t] = table
        elif t == "pytorch-infer":
            table = pytorch_infer_table(head, a.rounds)
            if table is not None:
                tables[t] = table
        elif t == "threads":
            tables[t] = threads_table(head, a.rounds)
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
