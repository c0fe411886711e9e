"""Writes the PyTorch interchange fixture of tests/pytorch.rs:

    python3 benches/peers/pytorch_fixture.py

tests/fixtures/pytorch_mlp.safetensors is the plain `state_dict` of
`nn.Sequential(Linear(6, 5), ReLU(), Linear(5, 3))` (tensors `0.weight`,
`0.bias`, `2.weight`, `2.bias`, no densekit metadata), saved with
`safetensors.torch.save_file`; tests/fixtures/pytorch_mlp.json holds a few
inputs and the logits numpy computes from the saved weights (float64), which
`Mlp::load_pytorch` must reproduce to 1e-6. Needs torch, numpy, safetensors.
"""
import json
import os

import numpy as np
import torch
from safetensors.torch import save_file

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures")


def main():
    torch.manual_seed(7)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    os.makedirs(here, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              os.path.join(here, "pytorch_mlp.safetensors"))
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    w = {k: v.detach().numpy().astype(np.float64) for k, v in model.state_dict().items()}
    h = np.maximum(x.astype(np.float64) @ w["0.weight"].T + w["0.bias"], 0.0)
    logits = h @ w["2.weight"].T + w["2.bias"]
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(x)).numpy()
    assert np.allclose(torch_logits, logits, atol=1e-6), "torch and numpy disagree"
    with open(os.path.join(here, "pytorch_mlp.json"), "w") as f:
        json.dump({"activation": "relu", "inputs": x.tolist(), "logits": logits.tolist()}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
