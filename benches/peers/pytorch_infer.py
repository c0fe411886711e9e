"""The `cargo bench --bench infer` cases in PyTorch: 784-256-10 forward on
the CPU, batch 1, 8, 32, 256 and 1000, under `torch.inference_mode()`.

    python3 benches/peers/pytorch_infer.py --threads 1
    python3 benches/peers/pytorch_infer.py --threads 2

Each call takes the next `batch` MNIST test images (or dense inputs
without zeros, `--inputs dense`), as the densekit bench does. Prints, per
batch, the median over rounds of µs per call and images/s. Run it
alternately with the densekit bench on a quiet machine (see PERF.md).
"""
import argparse
import statistics
import time

import numpy as np
import torch

from mnist_data import load


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--inputs", choices=["mnist", "dense"], default="mnist")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--seconds", type=float, default=0.1, help="time per round")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    _, _, x_test, _ = load()
    if a.inputs == "dense":
        x_test = (np.arange(x_test.size) * 37 % 251 / 251.0 + 0.01).astype(np.float32).reshape(x_test.shape)
    x = torch.from_numpy(x_test)
    net = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)).eval()
    print(f"torch {torch.__version__}, {a.threads} thread(s), inputs {a.inputs}")
    print("| batch | µs per call | images/s |")
    print("|---|---|---|")
    with torch.inference_mode():
        for batch in (1, 8, 32, 256, 1000):
            chunks = [x[i:i + batch] for i in range(0, len(x) - batch + 1, batch)]
            for c in chunks[:50]:
                net(c)
            per_call = []
            for _ in range(a.rounds):
                calls, start = 0, time.perf_counter()
                while time.perf_counter() - start < a.seconds:
                    net(chunks[calls % len(chunks)])
                    calls += 1
                per_call.append((time.perf_counter() - start) / calls)
            t = statistics.median(per_call)
            print(f"| {batch} | {t * 1e6:.1f} | {batch / t:,.0f} |")


if __name__ == "__main__":
    main()
