#!/usr/bin/env python3
"""Evaluate a densekit MLP file with numpy alone, as a check that the file
means what densekit says it means.

Reads the safetensors file by hand (8-byte header length, JSON header,
little-endian f32 tensors): `layers.N.weight` (out, in) and `layers.N.bias`,
and for a PReLU model the learned slopes `activations.N.weight` (shape [1]).
Computes the logits of seeded inputs and writes both as JSON, the fixture
tests/features.rs compares densekit's forward pass with:

    python3 benches/peers/numpy_forward.py tests/fixtures/prelu_mlp.safetensors \
        --out tests/fixtures/prelu_mlp.json
"""
import argparse
import json
import struct
import sys

import numpy as np


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    meta = header.pop("__metadata__", {})
    body = data[8 + header_len :]
    tensors = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            sys.exit(f"{path}: tensor {name} is {info['dtype']}, expected F32")
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(body[start:end], dtype="<f4").reshape(info["shape"])
    return meta, tensors


def forward(meta, tensors, x):
    sizes = [int(s) for s in meta["sizes"].split(",")]
    hidden = meta["hidden_activation"]
    h = x.astype(np.float64)
    layers = len(sizes) - 1
    for layer in range(layers):
        w = tensors[f"layers.{layer}.weight"].astype(np.float64)
        b = tensors[f"layers.{layer}.bias"].astype(np.float64)
        h = h @ w.T + b
        if layer + 1 == layers:
            break
        if hidden.startswith("prelu"):
            a = float(tensors[f"activations.{layer}.weight"][0])
            h = np.where(h > 0, h, a * h)
        elif hidden == "relu":
            h = np.maximum(h, 0)
        elif hidden == "tanh":
            h = np.tanh(h)
        elif hidden == "sigmoid":
            h = 1 / (1 + np.exp(-h))
        else:
            sys.exit(f"activation {hidden} is not handled here")
    return h


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a densekit .safetensors model")
    parser.add_argument("--out", required=True, help="JSON file for inputs and logits")
    parser.add_argument("--rows", type=int, default=5, help="inputs to evaluate")
    args = parser.parse_args()
    meta, tensors = read_safetensors(args.model)
    inputs = int(meta["sizes"].split(",")[0])
    x = np.random.default_rng(1).uniform(0, 1, (args.rows, inputs)).astype(np.float32)
    logits = forward(meta, tensors, x)
    with open(args.out, "w") as f:
        json.dump({"inputs": x.ravel().tolist(), "logits": logits.ravel().tolist()}, f)
    print(f"{args.out}: {args.rows} inputs, logits of shape {logits.shape}")


if __name__ == "__main__":
    main()
