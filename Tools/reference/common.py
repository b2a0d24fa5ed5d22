"""Shared helpers for parity fixtures.

Fixture format (one safetensors file per case, read by the Swift tests):
  input            the module's input (N×C×H×W or N×L×C), float32
  output           the reference's output on `input`, float32
  map              (optional) the reference's attention map for `map_query`, float32
  state.<key>      every state_dict entry under its reference key (dtype kept: I64, BOOL, ...)
metadata (strings):
  module           our module id (modules.tsv)
  config           JSON object of strings: the `--set key=value` pairs the Swift side builds the
                   module with (booleans as true/false, lists comma-separated)
  reference        the class and package version that produced `output`
  map_query        "row,col" of the query pixel for `map` (when present)
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "FastAttentionTests", "Fixtures")


def randomise_(module: torch.nn.Module, generator: torch.Generator, std: float = 0.3) -> None:
    """Every parameter and every float buffer random: zero-initialised gates and output convs
    (mmcv's conv_out, CCNet's gamma, GCNet's last conv) would otherwise make a test vacuous."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * std)
        for name, b in module.named_buffers():
            if not b.dtype.is_floating_point:
                continue
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=generator) + 0.5)
            else:
                b.copy_(torch.randn(b.shape, generator=generator) * std)


def save_fixture(name: str, module_id: str, config: dict, reference: str, module: torch.nn.Module,
                 x: torch.Tensor, y: torch.Tensor, attn_map=None, map_query=None, extra=None) -> str:
    tensors = {"input": x.detach().contiguous().float(), "output": y.detach().contiguous().float()}
    if attn_map is not None:
        tensors["map"] = attn_map.detach().contiguous().float()
    for k, v in module.state_dict().items():
        tensors["state." + k] = v.detach().contiguous()
    for k, v in (extra or {}).items():
        tensors[k] = v.detach().contiguous()
    meta = {"module": module_id, "config": json.dumps(set_values(config), sort_keys=True), "reference": reference,
            "torch": torch.__version__}
    if map_query is not None:
        meta["map_query"] = f"{map_query[0]},{map_query[1]}"
    os.makedirs(FIXTURES, exist_ok=True)
    path = os.path.abspath(os.path.join(FIXTURES, name + ".safetensors"))
    save_file(tensors, path, metadata=meta)
    print(f"{name}: {os.path.getsize(path)} bytes, output {tuple(y.shape)}", file=sys.stderr)
    return path


def set_values(config: dict) -> dict:
    """Constructor kwargs as `attend --set` text."""
    def text(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (list, tuple)):
            return ",".join(text(i) for i in v)
        return str(v)
    return {k: text(v) for k, v in config.items()}


def save_state_dict(module: torch.nn.Module, path: str) -> None:
    """A plain state_dict export, as a user would make for `attend run --weights`."""
    save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()}, path)
