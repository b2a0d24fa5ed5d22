"""Side-by-side timing: `attend bench` (Swift) against the PyTorch reference on the same input
sizes, config and thread count, alternating A B A B so drift and turbo affect both alike.

Usage:
  python Tools/bench/compare.py --attend .build/release/attend [--modules non-local] \
      [--sizes 32,64] [--channels 64] [--threads 1,2] [--out docs/benchmarks.md]

The PyTorch side builds the module with random weights (eval mode, no_grad) and times its
forward on a 1×C×S×S input; the Swift side is `attend bench --json` for the same config.
Ops (gemm, conv2d 3×3, softmax) are compared too with `attend bench --op`.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch


def torch_modules():
    """module id → (builder(C, settings) -> nn.Module, the `--set` pairs for attend)."""
    from mmcv.cnn import NonLocal2d
    return {
        "non-local": (lambda c: NonLocal2d(c, reduction=2, mode="embedded_gaussian"), []),
    }


def time_torch(fn, min_time=0.5, repeats=5):
    with torch.no_grad():
        fn()
        times = []
        start = time.perf_counter()
        while len(times) < repeats or time.perf_counter() - start < min_time:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def torch_peak_mib(fn):
    """Peak resident growth during one call, via ru_maxrss is process-wide; report allocator-free
    estimate instead: the profiler's CPU memory (bytes allocated by the forward)."""
    from torch.profiler import profile, ProfilerActivity
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    peak = 0
    cur = 0
    for e in prof.events():
        cur += max(e.cpu_memory_usage, 0)
        peak = max(peak, cur)
    return peak / 2**20


def attend_json(attend, args):
    out = subprocess.run([attend] + args + ["--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attend", default=".build/release/attend")
    ap.add_argument("--modules", default="all")
    ap.add_argument("--sizes", default="32,64")
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=2, help="A B rounds per measurement")
    ap.add_argument("--ops", action="store_true", help="also compare gemm, conv2d and softmax")
    ap.add_argument("--out", default="docs/benchmarks.md")
    a = ap.parse_args()

    mods = torch_modules()
    ids = list(mods) if a.modules == "all" else a.modules.split(",")
    sizes = [int(s) for s in a.sizes.split(",")]
    rows = []
    for threads in [int(t) for t in a.threads.split(",")]:
        torch.set_num_threads(threads)
        for mid in ids:
            build, settings = mods[mid]
            for s in sizes:
                m = build(a.channels).eval()
                x = torch.randn(1, a.channels, s, s)
                swift, ref = [], []
                sw_args = ["bench", "--module", mid, "--sizes", str(s), "--channels", str(a.channels),
                           "--threads", str(threads)] + sum((["--set", kv] for kv in settings), [])
                for _ in range(a.rounds):
                    r = attend_json(a.attend, sw_args)
                    swift.append(r["sizes"][0]["median_ms"])
                    swift_mem = r["sizes"][0]["peak_mib"]
                    ref.append(time_torch(lambda: m(x)))
                rows.append(dict(what=mid, size=f"{s}×{s}", threads=threads, swift_ms=min(swift), torch_ms=min(ref),
                                 swift_mib=swift_mem, torch_mib=torch_peak_mib(lambda: m(x))))
                print(rows[-1], file=sys.stderr)
        if a.ops:
            for op, shape in [("gemm", "1024"), ("conv2d", "256x64x64"), ("softmax", "4096")]:
                r = attend_json(a.attend, ["bench", "--op", op, "--threads", str(threads)])
                if op == "gemm":
                    n = 1024
                    A, B = torch.randn(n, n), torch.randn(n, n)
                    tt = time_torch(lambda: A @ B)
                elif op == "conv2d":
                    conv = torch.nn.Conv2d(256, 256, 3, padding=1)
                    x = torch.randn(1, 256, 64, 64)
                    tt = time_torch(lambda: conv(x))
                else:
                    x = torch.randn(4096, 4096)
                    tt = time_torch(lambda: x.softmax(-1))
                rows.append(dict(what=f"op {op}", size=shape, threads=threads, swift_ms=r["median_ms"], torch_ms=tt,
                                 swift_mib=r.get("peak_mib", 0), torch_mib=0.0, note=r.get("note", "")))
                print(rows[-1], file=sys.stderr)

    lines = ["# Benchmarks", "",
             f"Machine: {os.cpu_count()} cores; torch {torch.__version__}; medians of ≥5 runs, best of {a.rounds} "
             "alternating Swift/PyTorch rounds. Ratio = Swift time / PyTorch time (below 1: Swift faster).", "",
             "| what | size | threads | Swift ms | PyTorch ms | ratio | Swift peak MiB | PyTorch peak MiB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['what']} | {r['size']} | {r['threads']} | {r['swift_ms']:.3f} | {r['torch_ms']:.3f} | "
                     f"{r['swift_ms'] / r['torch_ms']:.2f} | {r['swift_mib']:.1f} | {r['torch_mib']:.1f} |")
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
