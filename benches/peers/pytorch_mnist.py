"""The models of `train_mnist`, in PyTorch on the CPU, for side-by-side timing.

    python3 benches/peers/pytorch_mnist.py --model mlp --threads 2

Data is preloaded as tensors (no DataLoader); each epoch shuffles with a
seeded permutation and slices batches, like densekit's trainer. Prints one
line per epoch with its seconds and the test accuracy.
"""
import argparse
import time

import torch

from mnist_data import load

MODELS = {
    # name: (hidden widths, optimizer, lr, batch, default epochs)
    "lecture": ([], "sgd", 0.01, 32, 20),
    "mlp": ([256], "adam", 1e-3, 128, 10),
    "wide": ([1024, 1024], "momentum", 0.05, 256, 3),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=MODELS, default="mlp")
    p.add_argument("--epochs", type=int)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    hidden, opt_name, lr, batch, epochs = MODELS[a.model]
    epochs = a.epochs or epochs
    x_train, y_train, x_test, y_test = (torch.from_numpy(v) for v in load())
    sizes = [784] + hidden + [10]
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i + 2 < len(sizes):
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    if opt_name == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9 if opt_name == "momentum" else 0.0)
    loss_fn = torch.nn.CrossEntropyLoss()
    params = sum(p.numel() for p in model.parameters())
    n = x_train.shape[0]
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        model.train()
        perm = torch.randperm(n)
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            loss.backward()
            opt.step()
        seconds = time.perf_counter() - start
        model.eval()
        with torch.no_grad():
            acc = (model(x_test).argmax(1) == y_test).float().mean().item()
        print(f"pytorch {a.model} epoch {epoch}: {seconds:.3f} s, {n / seconds:.0f} samples/s, "
              f"{6 * params * n / seconds / 1e9:.1f} GFLOP/s (6·params·samples), test acc {100 * acc:.2f}%", flush=True)


if __name__ == "__main__":
    main()
