"""Side-by-side timing of every registered module: `attend bench` (Swift) against its PyTorch
reference (Tools/bench/references.py) on the same input size, config and thread count, measured
alternately Swift, PyTorch, Swift, PyTorch (--rounds) so load drift hits both alike.

Usage (from the repository root, after `swift build -c release`):
  python Tools/bench/compare.py                       # every module, 64×64 / 4096 tokens, C=64, 1 and 2 threads
  python Tools/bench/compare.py --modules non-local,cbam --threads 1 --rounds 3
  python Tools/bench/compare.py --from-json docs/benchmarks.json   # re-render the markdown only

GitHub-only references need their checkouts named by FA_REF_* env vars (see references.py);
a module whose reference is not available gets a row saying so.

Per row: the median of each side's timed runs (≥ --repeats runs and ≥ --min-time s after one
warm-up) in each round, the best (lowest) round median of each side kept; the ratio is
Swift / PyTorch. Peak memory: Swift's is attend's MemoryStats (tensor bytes live above the
start of the timed runs); PyTorch's is the torch.profiler CPU allocator trace (profile_memory:
the running sum of its alloc/free events over one forward, peak above the start). Both exclude
weights and the input. Targets: every module ≤ 1.0×, median ratio ≤ 0.67.
Writes docs/benchmarks.md and the raw figures to docs/benchmarks.json; when --scaling names
a file written by Tools/bench/scaling.py, its fitted-exponent table is appended.
"""
import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import attendenv  # noqa: E402
from attendenv import blas_core, loadavg, set_blas_core  # noqa: E402,F401
import references  # noqa: E402

# Why a module misses the target, from profiling (docs/benchmarks.md "Why"); keyed by module id.
# Filled in by hand after a measured investigation (perf record on the Swift side); shown only
# for modules that miss in the run being rendered.
WHY = {
    "linear-transformer": "about half GEMM: the q/k projections run per head per 64-token chunk of the kernelised "
                          "core (512 calls of 64×16×64 at ~1.6 µs); two whole-sequence GEMMs would take ~0.54 of "
                          "that ~0.8 ms. φ = elu+1 is branch-free and vectorised since the first pass.",
    "set-transformer": "GEMM-bound (48% sgemm on the AVX2 Haswell kernel forced here, against MKL); fc_k and fc_v "
                       "on the same input could share one GEMM.",
    "jukebox": "GEMMs ~65% of the forward (64×64 row blocks at head width 32, running near one core's AVX2 peak); "
               "4-5% page faults of fresh output tensors, ~5% bias rows, ~5% OpenBLAS packing of the small "
               "per-block products; the rest is constant factors against MKL.",
    "kronecker": "a 0.4 ms forward: GEMMs near the AVX2 peak (42%) and the exponential (9%); PyTorch's own "
                 "time swings 0.35-0.42 ms between runs.",
    "sac": "the LSTM recurrence (19%) cannot be split within a sequence; GEMMs 21%, scalar dot products 11%, "
           "top-k and pools 8%; the second thread gains little at 4096 tokens.",
    "synthesizer": "the reference's dense synthesizer maps each token through Linear(L, L): O(L³), 137 GFLOP at "
                   "L=4096, not the paper's O(N²D) (hidden_dims=<in_dims> runs the paper's); pure GEMM, so this is "
                   "OpenBLAS on the AVX2 kernel forced here against MKL.",
    "performer-favor": "30% in scalar cosf/sinf for the trigonometric features (16.8 M each); PyTorch's are "
                       "vectorised. A SIMD sincos in CKernels would remove most of it; the rest is GEMM.",
}


def time_torch(fn, min_time, repeats):
    """Median ms of fn() over ≥ repeats runs and ≥ min_time s, after one warm-up."""
    with torch.no_grad():
        fn()
        times = []
        start = time.perf_counter()
        while len(times) < repeats or time.perf_counter() - start < min_time:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
            if len(times) >= 1000:
                break
    return statistics.median(times)


def torch_peak_mib(fn):
    """Peak bytes the CPU allocator holds above the start during one forward, from the profiler's
    memory events (each alloc +n, each free -n, in time order)."""
    from torch.profiler import ProfilerActivity, profile
    with torch.no_grad():
        fn()                                    # lazy buffers, caches: as the timed runs see them
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    cur = peak = 0
    for e in events:
        cur += e.nbytes()
        peak = max(peak, cur)
    return peak / 2 ** 20


def attend_json(attend, args, timeout=900):
    r = subprocess.run([attend] + args + ["--json"], capture_output=True, text=True, timeout=timeout,
                       env=attendenv.ATTEND_ENV)
    if r.returncode != 0:
        raise RuntimeError((r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1])
    return json.loads(r.stdout)


def registered(attend):
    """Module ids from `attend list --json`, each once, in registry order; and the duplicates."""
    rows = attend_json(attend, ["list"])
    ids, dup, info = [], [], {}
    for r in rows:
        if r["id"] in info:
            dup.append(r["id"])
            continue
        ids.append(r["id"])
        info[r["id"]] = r
    return ids, dup, info


def bench_module(a, mid, threads):
    rows = []
    try:
        built = references.build(mid, a.channels, a.size)
        ref_error = None
    except references.Unavailable as e:
        built, ref_error = None, "reference unavailable: " + str(e).splitlines()[0]
    except Exception as e:                       # noqa: BLE001 - a broken reference is a row, not a crash
        built, ref_error = None, f"reference failed: {type(e).__name__}: {e}"[:200]
    settings = built.settings if built else []
    torch_mib = None
    if built:
        torch.set_num_threads(1)
        try:
            torch_mib = torch_peak_mib(built.forward)
        except Exception as e:                   # noqa: BLE001
            built, ref_error = None, f"reference failed: {type(e).__name__}: {e}"[:200]
    for t in threads:
        torch.set_num_threads(t)
        swift, ref, sw_mib, err = [], [], None, None
        load0 = loadavg()
        for _ in range(a.rounds):
            # After a first round slower than --slow-s a forward, later rounds time one run
            # (after the warm-up), so a full run stays in minutes.
            sw_rep, sw_min = (1, 0) if swift and swift[0] > a.slow_s * 1e3 else (a.repeats, a.min_time)
            pt_rep, pt_min = (1, 0) if ref and ref[0] > a.slow_s * 1e3 else (a.repeats, a.min_time)
            if err is None:
                sw_args = ["bench", "--module", mid, "--sizes", str(a.size), "--channels", str(a.channels),
                           "--threads", str(t), "--repeats", str(sw_rep), "--min-time", str(sw_min)]
                sw_args += sum((["--set", s] for s in settings), [])
                try:
                    r = attend_json(a.attend, sw_args)
                    swift.append(r["sizes"][0]["median_ms"])
                    sw_mib = r["sizes"][0]["peak_mib"]
                except Exception as e:           # noqa: BLE001
                    err = f"attend failed: {e}"[:200]
            if built:
                ref.append(time_torch(built.forward, pt_min, pt_rep))
        row = dict(module=mid, size=a.size, threads=t, channels=a.channels,
                   swift_ms=min(swift) if swift else None, torch_ms=min(ref) if ref else None,
                   swift_rounds=swift, torch_rounds=ref, swift_mib=sw_mib, torch_mib=torch_mib,
                   settings=settings, reference=built.reference if built else None,
                   note=(built.note if built else "") or "", error=err or ref_error,
                   load_before=load0, load_after=loadavg())
        row["ratio"] = row["swift_ms"] / row["torch_ms"] if row["swift_ms"] and row["torch_ms"] else None
        rows.append(row)
        print(f"{mid:20s} T={t} swift {fmt(row['swift_ms'])} ms  torch {fmt(row['torch_ms'])} ms  "
              f"ratio {fmt(row['ratio'], 2)}  load {row['load_after']}  {row['error'] or ''}", file=sys.stderr)
    del built
    gc.collect()
    return rows


def bench_ops(a, threads):
    rows = []
    for t in threads:
        torch.set_num_threads(t)
        for op in ["gemm", "conv2d", "softmax", "attention"]:
            r = attend_json(a.attend, ["bench", "--op", op, "--threads", str(t), "--repeats", str(a.repeats),
                                       "--min-time", str(a.min_time)])
            with torch.no_grad():
                if op == "gemm":
                    A, B = torch.randn(1024, 1024), torch.randn(1024, 1024)
                    tt, shape = time_torch(lambda: A @ B, a.min_time, a.repeats), "1024³"
                elif op == "conv2d":
                    conv, x = torch.nn.Conv2d(256, 256, 3, padding=1), torch.randn(1, 256, 64, 64)
                    tt, shape = time_torch(lambda: conv(x), a.min_time, a.repeats), "3×3 256→256 on 64×64"
                elif op == "softmax":
                    x = torch.randn(4096, 4096)
                    tt, shape = time_torch(lambda: x.softmax(-1), a.min_time, a.repeats), "4096×4096 rows (Swift: 1 thread)"
                else:
                    q, k, v = (torch.randn(1, 8, 4096, 64) for _ in range(3))
                    f = torch.nn.functional.scaled_dot_product_attention
                    tt, shape = time_torch(lambda: f(q, k, v), a.min_time, a.repeats), "N=4096, 8 heads, d=64"
            rows.append(dict(op=op, shape=shape, threads=t, swift_ms=r["median_ms"], torch_ms=tt,
                             ratio=r["median_ms"] / tt, load=loadavg()))
            print(f"op {op:10s} T={t} swift {r['median_ms']:.2f} torch {tt:.2f}", file=sys.stderr)
    return rows


def machine():
    model = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores, {model}"


def torch_backend():
    cfg = torch.__config__.show()
    parts = [name for key, name in [("USE_MKL=ON", "MKL"), ("USE_MKLDNN=ON", "oneDNN"), ("BLAS_INFO=open", "OpenBLAS")]
             if key in cfg]
    return ", ".join(parts) or "?"


def fmt(v, nd=3):
    if v is None:
        return "—"
    if 0 < abs(v) < 10 ** -(nd - 1):         # keep two significant digits of small figures
        return f"{v:.2g}"
    return f"{v:.{nd}f}"


def render(data, scaling=None):
    a, rows = data["args"], data["rows"]
    ratios = [r["ratio"] for r in rows if r["ratio"] is not None]
    med = statistics.median(ratios) if ratios else None
    by_t = {}
    for r in rows:
        if r["ratio"] is not None:
            by_t.setdefault(r["threads"], []).append(r["ratio"])
    L = ["# Benchmarks: Swift (`attend bench`) against the PyTorch references", "",
         f"Generated by `{data['command']}` on {data['date']} (commit {data['commit']}).", "",
         f"Machine: {data['machine']}; torch {data['torch']} ({data.get('torch_blas', '?')}); Swift's BLAS: OpenBLAS, "
         f"core {data.get('blas', '?')}. **Load average (1, 5, 15 min): "
         f"{data['load_start']} at the start, {data['load_end']} at the end** — other jobs were running, "
         "so treat single figures as noisy (each row's load is in benchmarks.json).", "",
         f"Input: 1×{a['channels']}×{a['size']}×{a['size']} maps for 2D modules, 1×{a['size'] ** 2}×{a['channels']} "
         f"tokens for sequence modules; default configs (the `--set` pairs given to attend are in benchmarks.json). "
         f"Each side: one warm-up, then ≥{a['repeats']} runs and ≥{a['min_time']} s; the best of {a['rounds']} "
         f"alternating Swift/PyTorch round medians (a side slower than {a.get('slow_s', 1.0)} s a forward times one "
         "run in the later rounds). Ratio = Swift ms / PyTorch ms (below 1: Swift faster).", "",
         "Peak memory: Swift = attend's tensor accounting (MemoryStats: tensor bytes live above the start); "
         "PyTorch = torch.profiler `profile_memory` (running sum of the CPU allocator's alloc/free events "
         "over one forward, peak above the start). Both leave out weights and the input.", ""]
    cores = int(data["machine"].split()[0]) if data["machine"].split()[0].isdigit() else 0
    if cores and float(data["load_start"].split(",")[0]) > cores and any(r["threads"] > 1 for r in rows):
        L += [f"Caution: the load was above the core count ({cores}), so a 2-thread run rarely had both cores. "
              "PyTorch's OpenMP fork/join waits for its descheduled worker at every parallel region and its "
              "multi-thread times balloon (compare its 1- and 2-thread columns); Swift's concurrentPerform lets the "
              "calling thread take the work. Judge speed on the 1-thread rows; the 2-thread ratios flatter Swift.", ""]
    if med is not None:
        per_t = "; ".join(f"**{t} thread{'s' if t > 1 else ''}: {statistics.median(v):.2f}** ({len(v)} rows)"
                          for t, v in sorted(by_t.items()))
        L += [f"Median ratio: {per_t}; all rows: {med:.2f}. Target: median ≤ 0.67, every module ≤ 1.0.", ""]
    L += ["| module | size | threads | Swift ms | PyTorch ms | ratio | Swift peak MiB | PyTorch peak MiB | note |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        size = f"{r['size']}×{r['size']}"
        note = r["error"] or r["note"]
        ratio = fmt(r["ratio"], 2)
        if r["ratio"] is not None and r["ratio"] > 1.0:
            ratio = f"**{ratio}**"
        L.append(f"| {r['module']} | {size} | {r['threads']} | {fmt(r['swift_ms'])} | {fmt(r['torch_ms'])} | {ratio} | "
                 f"{fmt(r['swift_mib'], 1)} | {fmt(r['torch_mib'], 1)} | {note} |")
    miss = {}
    for r in rows:
        if r["ratio"] is not None and r["ratio"] > 1.0:
            miss.setdefault(r["module"], []).append(r)
    L += ["", "## Modules that miss the target (ratio > 1.0 at some thread count)", ""]
    if not miss:
        L.append("None.")
    for mid, rs in miss.items():
        worst = max(rs, key=lambda r: r["ratio"])
        why = WHY.get(mid) or rs[0]["note"] or "not profiled yet"
        each = ", ".join("%.2f× at %dT" % (r["ratio"], r["threads"]) for r in rs)
        L.append(f"- **{mid}** ({each}; worst {worst['ratio']:.2f}×): {why}")
    missing = [r for r in rows if r["ratio"] is None]
    if missing:
        L += ["", "## Rows without a ratio", ""]
        for r in missing:
            L.append(f"- {r['module']} ({r['threads']}T): {r['error']}")
    if data.get("blas") and "OPENBLAS_CORETYPE" in data["blas"]:
        L += ["", f"OpenBLAS ran with its {data['blas']} kernels, not the CPU's own (AVX-512 here: 2× the GEMM "
              "throughput, see `attend bench --op gemm` under `OPENBLAS_CORETYPE` unset). `--blas-core auto` unsets it: "
              "see benchmarks-blas-auto.md when present."]
    if data.get("duplicates"):
        L += ["", f"Note: `attend list` registers {', '.join(sorted(set(data['duplicates'])))} more than once "
              "(Registry.modules); each id is benchmarked once."]
    if data.get("ops"):
        L += ["", "## Core ops", "", "| op | shape | threads | Swift ms | PyTorch ms | ratio |", "|---|---|---|---|---|---|"]
        for r in data["ops"]:
            L.append(f"| {r['op']} | {r['shape']} | {r['threads']} | {r['swift_ms']:.2f} | {r['torch_ms']:.2f} | {r['ratio']:.2f} |")
    if scaling:
        L += ["", scaling_section(scaling)]
    return "\n".join(L) + "\n"


# Why a module's measured exponent misses its paper's, from measurement; shown only for misses.
SCALING_WHY = {
    "sparse-transformer": "the paper's O(N√N·D) leaves out the O(N·D²) projections: per token 4·D² = 16k multiply-adds "
                          "against ~2·2√N·D = 33k for the attention at 128², so the slope sits between 1 and 1.5 "
                          "(a re-run gave 1.34); the attention kernel itself never builds N×N",
    "axial": "as sparse-transformer: the O(N·D²) projections (4·D² per token) are half the attention's 2·(H+W)·D at "
             "128², pulling the slope below 1.5 (re-run 1.32)",
    "jukebox": "row attention over √N-token rows (blocks = √L) is N√N, but the four D×D projections (c_attn, c_proj) "
               "cost as much per token as the attention at 128² (4·D² = 2·√N·D = 16k), so the slope is ~1.25 (re-run 1.28)",
    "reformer": "num_buckets unset grows with L (as HF: the largest power of 2 ≤ 2L/chunk), so hashing (x·R, R of "
                "d × num_buckets/2 per round) is O(N²·d/chunk): comparable to the chunked attention at 128² (re-run 1.32); "
                "a fixed num_buckets gives N log N",
    "sinkhorn": "fixed bucket_size, so n_b = N/64 buckets and the sort net's O(n_b²) term of the paper's own "
                "O(N²/n_b + n_b²) grows quadratically (soft top-k over n_b × n_b similarities); with the bucket means "
                "and similarities vectorised (35.9 → 32.1 ms at 128²) the slope came down from 1.25",
    "multiscale-transformer": "cost N·(window + N/pool) = N·(32 + N/8) is quadratic with a 1/8 factor; below 128² the "
                              "linear window and projection terms still pull the slope under 2 (re-run 1.72)",
    "kronecker": "attention over H+W averaged tokens, O((H+W)²·D) = O(N·D); under 1.2 ms even at 128², where fixed "
                 "per-call costs (thread wake-ups, small GEMM calls) are still a third of the time (re-run 0.81)",
    "input-independent": "96² and 128² skipped (5.2 GiB of H×N² logits), so the tail fit is the 32²→64² slope alone, "
                         "where a cache-resident 32² run flatters the small size",
    "transformer-on-a-diet": "1.15 at the edge of the band (re-run 1.10)",
    "fractal-tanimoto": "1.16-1.17 here, 1.10 in a re-run: the Winograd conv's tile groups are half empty when a row "
                        "has 24 tiles (96²), which bends the middle of the curve",
}


def scaling_section(s):
    L = ["## Scaling (Swift side)", "",
         f"Time ({s.get('stat', 'median')} of each size's runs, best of {s.get('rounds', 1)} rounds) against N (tokens) from {s['sizes'][0]}² to "
         f"{s['sizes'][-1]}², C={s['channels']}, {s['threads']} thread(s), "
         f"by `{s['command']}` on {s['date']}; OpenBLAS core {s.get('blas', '?')}; load average {s['load_start']} "
         f"at the start, {s['load_end']} at the end.",
         "", "![scaling](scaling.png)  ([SVG](scaling.svg))", "",
         "Fitted exponent = least-squares slope of log time against log N; *all* over every measured size (as "
         "`attend bench` fits), *tail* over the three largest sizes (two when fewer than four were measured). Within ±0.15 of the paper's: judged on the tail "
         "fit (small sizes are dominated by fixed costs). A paper complexity with a log N factor is judged against "
         "its own slope over the same sizes (in brackets).", "",
         "| module | sizes measured | paper | fitted (all) | fitted (tail) | within ±0.15 | note |",
         "|---|---|---|---|---|---|---|"]
    for m in s["modules"]:
        sizes = ",".join(str(p["size"]) for p in m["points"])
        want = m.get("paper_fit") or m["paper"]
        ok = "—" if m.get("tail") is None else ("yes" if abs(m["tail"] - want) <= 0.15 else "**no**")
        paper = f"{m['paper']:.2g}" if want == m["paper"] else f"{m['paper']:.2g} ({want:.2f})"
        note = "; ".join(t for t in (m.get("note", ""), SCALING_WHY.get(m["module"], "") if ok == "**no**" else "") if t)
        L.append(f"| {m['module']} | {sizes} | {paper} | {fmt(m.get('fitted'), 2)} | {fmt(m.get('tail'), 2)} | "
                 f"{ok} | {note} |")
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attend", default=".build/release/attend")
    ap.add_argument("--modules", default="all", help="comma-separated ids, or all (attend list)")
    ap.add_argument("--size", type=int, default=64, help="map side S (sequence modules: S² tokens)")
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=2, help="alternating Swift/PyTorch rounds per row")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per round (at least)")
    ap.add_argument("--min-time", type=float, default=0.3, help="timed seconds per round (at least)")
    ap.add_argument("--slow-s", type=float, default=1.0,
                    help="a side whose first round is slower than this (s a forward) times one run in later rounds")
    ap.add_argument("--ops", action="store_true", help="also compare gemm, conv2d, softmax and attention")
    ap.add_argument("--out", default="docs/benchmarks.md")
    ap.add_argument("--json", default="docs/benchmarks.json", help="raw figures (written beside --out)")
    ap.add_argument("--scaling", default="docs/scaling.json", help="Tools/bench/scaling.py output to append")
    ap.add_argument("--from-json", help="re-render --out from this raw file, measuring nothing")
    ap.add_argument("--blas-core", default="inherit",
                    help="OpenBLAS kernels for attend: inherit (the environment's OPENBLAS_CORETYPE), auto "
                         "(unset it: OpenBLAS detects the CPU) or a core name such as Haswell or SkylakeX")
    a = ap.parse_args()
    set_blas_core(a.blas_core)

    scaling = json.load(open(a.scaling)) if a.scaling and os.path.exists(a.scaling) else None
    if a.from_json:
        data = json.load(open(a.from_json))
    else:
        ids, dup, _ = registered(a.attend)
        if a.modules != "all":
            want = a.modules.split(",")
            unknown = [m for m in want if m not in ids]
            if unknown:
                sys.exit(f"unknown module ids: {', '.join(unknown)} (attend list --ids)")
            ids = want
        threads = [int(t) for t in a.threads.split(",")]
        data = dict(command="python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]),
                    date=datetime.datetime.now().isoformat(timespec="minutes"),
                    commit=subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                          text=True).stdout.strip(),
                    machine=machine(),
                    torch=torch.__version__, blas=blas_core(a.attend), torch_blas=torch_backend(),
                    args=vars(a), duplicates=dup, load_start=loadavg(), rows=[])
        t0 = time.time()
        for mid in ids:
            data["rows"] += bench_module(a, mid, threads)
        if a.ops:
            data["ops"] = bench_ops(a, threads)
        data["load_end"] = loadavg()
        data["wall_s"] = round(time.time() - t0, 1)
        os.makedirs(os.path.dirname(a.json) or ".", exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(data, f, indent=1)
    text = render(data, scaling)
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
