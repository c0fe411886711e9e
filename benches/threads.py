#!/usr/bin/env python3
"""Epoch time of train_mnist at several --threads, quiet and beside a busy process.

Usage: python3 benches/threads.py [--rounds N] [--epochs N] [--binary PATH] [THREADS...]
Defaults: 5 rounds, 3 epochs, target/release/train_mnist, threads 1 2 3 4 8.
Build first: cargo build --release --bin train_mnist.

Each round runs every thread count once, in turn, so drifts of a shared host
hit them alike; then the same with one CPU-bound competing process (a busy
loop) on the machine. An epoch's time is its training seconds as train_mnist
prints them; the first epoch (which also arranges the data) is left out. The
table gives medians over all kept epochs of all rounds, and each one's ratio
to the quiet run at the machine's core count.
"""
import os, re, statistics, subprocess, sys

args = sys.argv[1:]
def option(name, default):
    if name in args:
        i = args.index(name); value = args[i + 1]; del args[i:i + 2]; return value
    return default

rounds = int(option("--rounds", "5"))
epochs = int(option("--epochs", "3"))
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
binary = option("--binary", os.path.join(root, "target", "release", "train_mnist"))
threads = [int(t) for t in args] or [1, 2, 3, 4, 8]
cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
epoch_line = re.compile(r"^epoch +(\d+):.*?, ([0-9.]+) s \(")

def epoch_times(t):
    out = subprocess.run([binary, "--threads", str(t), "--epochs", str(epochs)],
                         capture_output=True, text=True, check=True).stdout
    times = [float(m.group(2)) for m in map(epoch_line.match, out.splitlines()) if m]
    return times[1:]

results = {}
for busy in (False, True):
    competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        for _ in range(rounds):
            for t in threads:
                results.setdefault((busy, t), []).extend(epoch_times(t))
    finally:
        if competitor:
            competitor.kill()
            competitor.wait()

base = statistics.median(results[(False, min(cores, max(threads)))]) if (False, min(cores, max(threads))) in results else None
print(f"{cores} cores; 784-256-10 defaults, {epochs} epochs × {rounds} rounds (first epoch left out)\n")
print("| --threads | quiet: s/epoch | vs quiet at %d | one busy process: s/epoch | vs quiet at %d |" % (cores, cores))
print("|---|---|---|---|---|")
for t in threads:
    quiet = statistics.median(results[(False, t)])
    busy = statistics.median(results[(True, t)])
    ratio = lambda v: f"{v / base:.2f}×" if base else "–"
    print(f"| {t} | {quiet:.3f} | {ratio(quiet)} | {busy:.3f} | {ratio(busy)} |")
