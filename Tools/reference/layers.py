"""PyTorch parity fixture for the TensorCore layers and functional ops.

Writes Tests/TensorCoreTests/Fixtures/layers.safetensors: for every case `<case>` the tensors
`<case>.input`, `<case>.output` and, for layers, the module's state_dict under `<case>.<key>`
(PyTorch's own key names, num_batches_tracked included). The safetensors metadata maps each case
name to a JSON config {"op": ..., "args": {...}, "input_shape": [...]} whose args are the torch
constructor / functional keyword arguments; metadata "cases" lists the case names in order.

Layers get random weights AND random BatchNorm running statistics, so nothing passes by being
the identity. Deterministic: torch.manual_seed(0), float32, CPU, eval mode.

    /work/venv/bin/python Tools/reference/layers.py
"""

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parents[2] / "Tests/TensorCoreTests/Fixtures/layers.safetensors"

torch.manual_seed(0)
tensors: dict[str, torch.Tensor] = {}
metadata: dict[str, str] = {}
cases: list[str] = []


def record(name, op, args, x, y, module=None):
    cases.append(name)
    metadata[name] = json.dumps({"op": op, "args": args, "input_shape": list(x.shape)})
    tensors[f"{name}.input"] = x.contiguous()
    tensors[f"{name}.output"] = y.detach().contiguous()
    if module is not None:
        for k, v in module.state_dict().items():
            tensors[f"{name}.{k}"] = v.detach().contiguous()


def randomize(module):
    """Random parameters, and random running statistics for BatchNorm (var kept positive)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
        if getattr(module, "running_mean", None) is not None:
            module.running_mean.copy_(torch.randn_like(module.running_mean))
            module.running_var.copy_(torch.rand_like(module.running_var) + 0.5)
            module.num_batches_tracked.fill_(17)
    return module.eval()


def layer(name, cls, args, shape, randomize_weights=True):
    m = cls(**args)
    if randomize_weights:
        randomize(m)
    m.eval()
    x = torch.randn(*shape)
    with torch.no_grad():
        y = m(x)
    record(name, cls.__name__, args, x, y, m)


def functional(name, fn, args, shape, **extra):
    x = torch.randn(*shape)
    y = getattr(F, fn)(x, **args, **extra)
    record(name, fn, args, x, y)


# Layers -------------------------------------------------------------------------------------
nn = torch.nn
layer("linear", nn.Linear, dict(in_features=7, out_features=5), (2, 3, 7))
layer("linear_nobias", nn.Linear, dict(in_features=4, out_features=3, bias=False), (5, 4))
layer("conv2d_g1", nn.Conv2d, dict(in_channels=3, out_channels=4, kernel_size=3, stride=2, padding=1), (2, 3, 7, 5))
layer("conv2d_g3", nn.Conv2d, dict(in_channels=6, out_channels=9, kernel_size=3, padding=2, dilation=2, groups=3),
      (2, 6, 7, 5))
layer("conv2d_dw", nn.Conv2d, dict(in_channels=4, out_channels=8, kernel_size=[3, 5], stride=[2, 1], padding=[1, 2],
                                   groups=4, bias=False), (1, 4, 7, 6))
layer("conv2d_1x1", nn.Conv2d, dict(in_channels=5, out_channels=3, kernel_size=1), (2, 5, 4, 3))
layer("conv2d_k5", nn.Conv2d, dict(in_channels=2, out_channels=3, kernel_size=5, stride=[1, 2], padding=1), (1, 2, 7, 9))
layer("conv1d", nn.Conv1d, dict(in_channels=3, out_channels=4, kernel_size=5, stride=2, padding=2), (2, 3, 11))
layer("conv1d_g3", nn.Conv1d, dict(in_channels=6, out_channels=3, kernel_size=3, padding=1, dilation=2, groups=3),
      (2, 6, 9))
layer("batchnorm2d", nn.BatchNorm2d, dict(num_features=3), (2, 3, 5, 4))
layer("batchnorm2d_batchstats", nn.BatchNorm2d, dict(num_features=3, affine=False, track_running_stats=False),
      (2, 3, 4, 4))
layer("batchnorm1d", nn.BatchNorm1d, dict(num_features=4, eps=1e-3), (3, 4, 6))
layer("batchnorm1d_2d", nn.BatchNorm1d, dict(num_features=4), (5, 4))
layer("layernorm", nn.LayerNorm, dict(normalized_shape=[5]), (2, 3, 5))
layer("layernorm_2d", nn.LayerNorm, dict(normalized_shape=[4, 5], elementwise_affine=False), (2, 3, 4, 5))
layer("groupnorm", nn.GroupNorm, dict(num_groups=3, num_channels=6), (2, 6, 4, 3))
layer("groupnorm_1", nn.GroupNorm, dict(num_groups=1, num_channels=4, eps=1e-3, affine=False), (2, 4, 5))

emb = nn.Embedding(num_embeddings=10, embedding_dim=4)  # N(0, 1) weights already
idx = torch.randint(0, 10, (2, 3), dtype=torch.int64)
with torch.no_grad():
    record("embedding", "Embedding", dict(num_embeddings=10, embedding_dim=4), idx, emb(idx), emb)

# Functional ops -----------------------------------------------------------------------------
functional("avg_pool2d", "avg_pool2d", dict(kernel_size=3, stride=2, padding=1), (2, 3, 7, 5))
functional("avg_pool2d_ceil", "avg_pool2d",
           dict(kernel_size=[3, 2], stride=[2, 2], padding=[1, 1], ceil_mode=True, count_include_pad=False), (2, 3, 7, 5))
functional("max_pool2d", "max_pool2d", dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True), (2, 3, 7, 5))
functional("adaptive_avg_pool2d", "adaptive_avg_pool2d", dict(output_size=[3, 2]), (2, 3, 7, 5))
functional("adaptive_max_pool2d", "adaptive_max_pool2d", dict(output_size=[4, 3]), (2, 3, 7, 5))
functional("avg_pool1d", "avg_pool1d", dict(kernel_size=3, stride=2, padding=1), (2, 3, 11))
functional("max_pool1d", "max_pool1d", dict(kernel_size=2, stride=3), (2, 3, 11))
functional("bilinear", "interpolate", dict(size=[11, 8], mode="bilinear", align_corners=False), (1, 2, 7, 5))
functional("bilinear_down", "interpolate", dict(size=[3, 4], mode="bilinear", align_corners=False), (1, 2, 7, 5))
functional("bilinear_align", "interpolate", dict(size=[4, 9], mode="bilinear", align_corners=True), (1, 2, 7, 5))
functional("bilinear_scale", "interpolate", dict(scale_factor=[1.7, 0.6], mode="bilinear", align_corners=False),
           (1, 2, 7, 5))
functional("nearest", "interpolate", dict(size=[11, 3], mode="nearest"), (1, 2, 7, 5))
functional("nearest_scale", "interpolate", dict(scale_factor=[1.5, 2.5], mode="nearest"), (1, 2, 7, 5))
functional("nearest_exact", "interpolate", dict(size=[5, 9], mode="nearest-exact"), (1, 2, 7, 5))

metadata["cases"] = json.dumps(cases)
metadata["generator"] = f"Tools/reference/layers.py, torch {torch.__version__}"
OUT.parent.mkdir(parents=True, exist_ok=True)
save_file(tensors, str(OUT), metadata=metadata)
print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(cases)} cases, {len(tensors)} tensors)")
