"""Writes the small safetensors and .npy fixtures read by Tests/TensorCoreTests/{SafeTensors,NPY,HalfFloat}Tests.swift.

Made with the reference writers (safetensors.torch.save_file, numpy.lib.format), so the Swift
readers are checked against real files, not against our own writer.
Run: /work/venv/bin/python Tools/reference/io_fixtures.py
"""
import os

import numpy as np
import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "Tests", "TensorCoreTests", "Fixtures")


def state_dict_fixture():
    # Tricky float32 values for F16/BF16 rounding (ties, subnormals, overflow, inf, NaN, -0).
    rounding = torch.tensor([
        0.0, -0.0, 1.0, -1.0, 0.1, 1 / 3, 65504.0, 65519.0, 65520.0, 1e6, -1e6,
        2.0 ** -14, 2.0 ** -24, 2.0 ** -25, 2.0 ** -25 * 1.0001, 3 * 2.0 ** -26, 2.0 ** -26,
        6.1e-5, 5.96e-8, 1.00048828125, 1.00146484375, 1.0009765625 + 2.0 ** -23,
        1.00390625, 1.01171875, 3.4e38, -3.4e38, 1e-40, -1e-45,
        float("inf"), float("-inf"), float("nan"), 12345.678, -0.000123, 2.5, 3.5,
    ], dtype=torch.float32)
    sd = {
        "conv.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 4 - 0.5,
        "half": torch.tensor([[1.0, -2.5, 65504.0], [2.0 ** -24, float("inf"), -0.0]], dtype=torch.float16),
        "bf": torch.tensor([1.0, -3.140625, 1e30, 2.0 ** -130], dtype=torch.bfloat16),
        "double": torch.tensor([[0.1, -1e300], [1e-300, 7.0]], dtype=torch.float64),
        "bn.num_batches_tracked": torch.tensor(1234567, dtype=torch.int64),  # 0-dim I64
        "gamma.scale": torch.tensor(0.5, dtype=torch.float32),  # 0-dim F32 (mmcv Scale)
        "mem_key": torch.zeros(2, 0, 3, dtype=torch.float32),  # zero-size
        "kmeans.initted": torch.tensor([True, False, True]),
        "ints": torch.tensor([-7, 0, 7], dtype=torch.int32),
        "bytes": torch.tensor([0, 128, 255], dtype=torch.uint8),
        "rounding.f32": rounding,
        "rounding.f16": rounding.half(),
        "rounding.bf16": rounding.bfloat16(),
    }
    save_file(sd, os.path.join(OUT, "io-state.safetensors"),
              metadata={"format": "pt", "note": "fixture \u00fcn\u00efcode \"quoted\""})


def npy_fixtures():
    def save(name, arr, version=None):
        with open(os.path.join(OUT, name), "wb") as f:
            np.lib.format.write_array(f, arr, version=version, allow_pickle=False)

    a23 = (np.arange(6).reshape(2, 3) / 4 - 0.5)
    save("f4-c.npy", a23.astype("<f4"))
    save("f8-c.npy", a23.astype("<f8"))
    save("f2-c.npy", np.array([1.0, -2.5, 65504.0, 2.0 ** -24], dtype="<f2"))
    save("f4-fortran.npy", np.asfortranarray(np.arange(24, dtype="<f4").reshape(2, 3, 4)))
    save("f8-fortran.npy", np.asfortranarray(a23.astype("<f8")))
    save("f4-0d.npy", np.array(3.5, dtype="<f4"))
    save("f4-4d.npy", np.arange(12, dtype="<f4").reshape(2, 1, 3, 2) - 5)
    save("f4-big-endian.npy", a23.astype(">f4"))
    save("f8-big-endian.npy", a23.astype(">f8"))
    save("i8.npy", np.array([-3, 0, 2 ** 40], dtype="<i8"))
    save("i4.npy", np.array([[-1, 2], [3, -4]], dtype="<i4"))
    save("u1.npy", np.array([0, 7, 255], dtype="|u1"))
    save("f4-v2.npy", a23.astype("<f4"), version=(2, 0))
    save("f4-v3.npy", a23.astype("<f4"), version=(3, 0))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    state_dict_fixture()
    npy_fixtures()
    for n in sorted(os.listdir(OUT)):
        print(n, os.path.getsize(os.path.join(OUT, n)))
