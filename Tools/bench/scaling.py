"""Scaling of every registered module on the Swift side: time against N = S² for S in --sizes,
with each module's paper complexity drawn beside it, as a log-log plot (docs/scaling.svg and
docs/scaling.png) and a fitted-exponent table (docs/scaling.json; Tools/bench/compare.py puts
it in docs/benchmarks.md, and this script re-renders that file when docs/benchmarks.json exists).

Usage (from the repository root, after `swift build -c release`):
  python Tools/bench/scaling.py                        # 16² … 128², C=64, 1 thread
  python Tools/bench/scaling.py --modules non-local,axial --sizes 16,32,64,128 --threads 2

Each size runs in its own `attend bench --module ID --sizes S --json` process (so its peak
resident memory is known); --rounds passes go over every module and size in turn and each
size keeps its fastest round, and within a process the fastest run (--stat min), the figures
least disturbed by other load. Before a size, its time and resident memory are predicted from the
previous size with the larger of the paper's exponent and the one measured so far; a size
predicted over --max-forward-s a forward or --max-rss-mib resident is skipped and said so
(a quadratic module's 128² can need GiBs: input-independent holds heads×N² logits).
The paper exponent is `complexity_exponent` from `attend list --json`. Over a finite range a
paper's cost does not grow as its leading exponent: a log N factor adds ≈ 0.11 between 64² and
128², and a linear term such as interlaced-sparse's N·D² (D = 64 here) holds the slope of
N·D² + N·√N·D at 1.29. So the exponent a module is judged against (`paper_fit`) is the
least-squares slope of the paper's own cost over the same sizes, evaluated with D = C when the
complexity is written in N, D, H, W, log and sqrt alone (otherwise N^e, times log N if it has one).

Two modules are run with the config their paper's complexity assumes, set per size (each point's
`settings` in the JSON, and the table's note say so): interlaced-sparse with blocks of ~√N pixels
(down_factor = round(√S) a side; the default fixed 8×8 block makes the long-range hop quadratic/64)
and synthesizer with the paper's d-wide hidden layer (hidden_dims = C; the reference's is N wide,
O(N³)). Every other module runs its default config.
"""
import argparse
import datetime
import json
import math
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import attendenv  # noqa: E402  (compare.py, which imports torch, is imported only to render, after measuring)


loadavg = attendenv.loadavg


def run_attend_rss(attend, args, timeout=900):
    """stdout, stderr, exit status and peak resident MiB of one attend process (reaped with
    wait4, which reports that child's own ru_maxrss)."""
    import threading
    p = subprocess.Popen([attend] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=attendenv.ATTEND_ENV)
    chunks = {"out": "", "err": ""}

    def drain(stream, key):
        chunks[key] = stream.read()
    threads = [threading.Thread(target=drain, args=(p.stdout, "out")),
               threading.Thread(target=drain, args=(p.stderr, "err"))]
    for t in threads:
        t.start()
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    _, status, usage = os.wait4(p.pid, 0)
    timer.cancel()
    for t in threads:
        t.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    return chunks["out"], chunks["err"], p.returncode, usage.ru_maxrss / 1024.0


def fit(xs, ys):
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx > 0 else None


# Config the paper's complexity assumes, per map side S and channels C (see the docstring).
PAPER_SETTINGS = {
    "interlaced-sparse": lambda s, c: {"down_factor": f"{max(1, round(math.sqrt(s)))},{max(1, round(math.sqrt(s)))}"},
    "synthesizer": lambda s, c: {"hidden_dims": str(c)},
}
PAPER_SETTINGS_NOTE = {
    "interlaced-sparse": "down_factor = round(√S) a side (blocks of ~√N pixels, the paper's choice)",
    "synthesizer": "hidden_dims = C (the paper's d-wide W1; the reference's N-wide one is O(N³))",
}


def complexity_function(complexity):
    """The paper's cost as a function of (N, D) when its O(...) is written in N, D, H, W (H = W = √N),
    log and sqrt alone, e.g. "O(N D^2 + N sqrt(N) D)"; None when it names other symbols (k, m, g, ...,
    whose values the paper leaves to the config)."""
    import re
    body = (complexity or "").strip()
    if not (body.startswith("O(") and body.endswith(")")):
        return None
    tokens = re.findall(r"[A-Za-z_]+|\d+(?:\.\d+)?|\^|[-+*/()]|\S", body[2:-1])
    functions, names = {"log", "sqrt"}, {"N", "D", "H", "W"}
    out, prev = [], None
    for t in tokens:
        if t.isidentifier() and t not in functions | names:
            return None
        starts = t == "(" or t[0].isalnum()
        ends = prev is not None and (prev == ")" or (prev[0].isalnum() and prev not in functions))
        if starts and ends:
            out.append("*")                       # implicit product: "N D", "N sqrt(N)", "(H+W) D"
        out.append("**" if t == "^" else t)
        prev = t
    expr = "".join(out)

    def cost(n, d):
        return eval(expr, {"__builtins__": {}}, dict(N=n, D=d, H=math.sqrt(n), W=math.sqrt(n),
                                                     log=math.log, sqrt=math.sqrt))
    try:
        cost(4096.0, 64.0)
    except Exception:
        return None
    return cost


def paper_slope(complexity, exponent, ns, channels):
    """What a measured fit over the sizes ns should come out as: the least-squares slope of the
    paper's own cost there, with D = C (so "N D^2 + N sqrt(N) D" counts its linear term, and a
    log N factor its growth); the bare exponent when the cost names config symbols."""
    if len(ns) < 2:
        return exponent
    cost = complexity_function(complexity)
    if cost is None:
        if complexity and "log(N" in complexity:
            return fit(ns, [n ** exponent * math.log(n) for n in ns])
        return exponent
    return fit(ns, [cost(float(n), float(channels)) for n in ns])


def measure_module(a, mid, paper, sizes, predict=True):
    points, skipped = [], []
    for s in sizes:
        n = s * s
        if points and predict:
            last = points[-1]
            grow = n / last["n"]
            e_t = max(paper, fit([p["n"] for p in points[-2:]], [p["ms"] for p in points[-2:]]) or 0, 1.0)
            t_pred = last["ms"] * grow ** e_t / 1e3
            rss_pred = last["rss_mib"] * grow ** max(paper, 1.0) if last["rss_mib"] else 0
            if t_pred > a.max_forward_s:
                skipped.append(dict(size=s, reason=f"predicted {t_pred:.1f} s a forward > {a.max_forward_s} s"))
                break
            if rss_pred > a.max_rss_mib:
                skipped.append(dict(size=s, reason=f"predicted {rss_pred / 1024:.1f} GiB resident > "
                                                  f"{a.max_rss_mib / 1024:.1f} GiB"))
                break
        settings = PAPER_SETTINGS[mid](s, a.channels) if mid in PAPER_SETTINGS else {}
        sets = [arg for k, v in settings.items() for arg in ("--set", f"{k}={v}")]
        out, err, rc, rss = run_attend_rss(a.attend, ["bench", "--module", mid, "--sizes", str(s), "--channels",
                                                      str(a.channels), "--threads", str(a.threads), "--repeats",
                                                      str(a.repeats), "--min-time", str(a.min_time), "--json"] + sets)
        if rc != 0:
            skipped.append(dict(size=s, reason=(err.strip().splitlines() or [f"exit {rc}"])[-1][:160]))
            break
        r = json.loads(out)["sizes"][0]
        ms = r.get(a.stat + "_ms", r["median_ms"])
        points.append(dict(size=s, n=n, ms=ms, median_ms=r["median_ms"], min_ms=r.get("min_ms"), peak_mib=r["peak_mib"],
                           rss_mib=rss, runs=r["runs"], load=loadavg(), settings=settings))
        print(f"{mid:20s} {s:4d}² {ms:10.3f} ms ({a.stat})  rss {rss:7.1f} MiB  load {loadavg()}", file=sys.stderr)
    return points, skipped


def summarise(mid, paper, rounds, skipped, complexity=None, channels=64):
    """One point a size: the round with the lowest time (each round's is kept under `rounds`)."""
    points = []
    for i, p in enumerate(rounds[0]):
        same = [r[i] for r in rounds if i < len(r) and r[i]["size"] == p["size"]]
        best = dict(min(same, key=lambda q: q["ms"]))
        best["round_ms"] = [q["ms"] for q in same]
        points.append(best)
    xs, ys = [p["n"] for p in points], [p["ms"] for p in points]
    tail_k = 3 if len(points) >= 4 else 2
    m = dict(module=mid, paper=paper, complexity=complexity, points=points, skipped=skipped,
             fitted=fit(xs, ys), tail=fit(xs[-tail_k:], ys[-tail_k:]) if len(points) >= 2 else None,
             paper_fit=paper_slope(complexity, paper, xs[-tail_k:], channels))
    notes = [PAPER_SETTINGS_NOTE[mid]] if mid in PAPER_SETTINGS_NOTE else []
    if abs(m["paper_fit"] - paper) >= 0.005:
        notes.append(f"paper's {complexity} at D = C over these sizes: slope {m['paper_fit']:.2f}")
    notes += [f"{k['size']}² skipped: {k['reason']}" for k in skipped]
    if notes:
        m["note"] = "; ".join(notes)
    return m


def plot(data, stem):
    import matplotlib
    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "fastattention"      # reproducible SVG ids
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401
    mods = [m for m in data["modules"] if m["points"]]
    cols = 6
    rows = math.ceil(len(mods) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.7, rows * 2.3), squeeze=False)
    for ax, m in zip(axes.flat, mods):
        xs = [p["n"] for p in m["points"]]
        ys = [p["ms"] for p in m["points"]]
        ax.loglog(xs, ys, "o-", color="#1f77b4", ms=3.5, lw=1.4, label="Swift")
        # The paper's slope, through the largest measured point.
        x0, y0 = xs[-1], ys[-1]
        logn = "log(N" in (m.get("complexity") or "")
        model = [x ** m["paper"] * (math.log(x) if logn else 1) for x in xs]
        ax.loglog(xs, [y0 * v / model[-1] for v in model], "--", color="#d62728", lw=1.1,
                  label=f"paper N^{m['paper']:g}" + (" log N" if logn else ""))
        tail = "—" if m.get("tail") is None else f"{m['tail']:.2f}"
        shown = m.get("paper_fit") or m["paper"]
        ax.set_title(f"{m['module']}\npaper {shown:.3g}, fit {tail}", fontsize=8)
        ax.tick_params(labelsize=6)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlim(data["sizes"][0] ** 2 / 1.3, data["sizes"][-1] ** 2 * 1.3)
        ax.grid(True, which="major", lw=0.3, alpha=0.5)
    for ax in list(axes.flat)[len(mods):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles[:1] + [plt.Line2D([], [], ls="--", color="#d62728")], ["Swift (attend bench), ms", "paper slope"],
               loc="lower right", fontsize=9, frameon=False)
    fig.suptitle(f"Forward time ({data.get('stat', 'median')} of runs) vs N (tokens), C={data['channels']}, "
                 f"{data['threads']} thread(s); "
                 f"load average {data['load_start']} → {data['load_end']}", fontsize=10)
    fig.supxlabel("N = S² (log)", fontsize=9)
    fig.supylabel(f"{data.get('stat', 'median')} ms (log)", fontsize=9)
    fig.tight_layout(rect=(0.01, 0.02, 1, 0.97))
    fig.savefig(stem + ".svg", metadata={"Date": None})
    fig.savefig(stem + ".png", dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attend", default=".build/release/attend")
    ap.add_argument("--modules", default="all")
    ap.add_argument("--sizes", default="16,32,64,96,128")
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.2)
    ap.add_argument("--rounds", type=int, default=2, help="passes over every module and size; the fastest kept")
    ap.add_argument("--stat", choices=["min", "median"], default="min",
                    help="which run time per size to fit: the fastest (least disturbed by other load) or the median")
    ap.add_argument("--max-forward-s", type=float, default=4.0, help="skip a size predicted slower than this")
    ap.add_argument("--max-rss-mib", type=float, default=3072,
                    help="skip a size predicted to need more resident memory (the child's ru_maxrss, which counts "
                         "this script's own ~20-30 MiB from the fork)")
    ap.add_argument("--out", default="docs/scaling", help="stem: writes STEM.svg, STEM.png, STEM.json")
    ap.add_argument("--from-json", action="store_true", help="redraw from STEM.json, measuring nothing")
    ap.add_argument("--blas-core", default="inherit", help="as compare.py: inherit, auto or an OpenBLAS core name")
    a = ap.parse_args()
    attendenv.set_blas_core(a.blas_core)

    if a.from_json:
        data = json.load(open(a.out + ".json"))
    else:
        listing = json.loads(subprocess.run([a.attend, "list", "--json"], check=True, capture_output=True,
                                            text=True).stdout)
        paper, complexity = {}, {}
        for r in listing:
            if "complexity_exponent" not in r:
                sys.exit("attend list --json has no complexity_exponent: rebuild attend")
            paper.setdefault(r["id"], r["complexity_exponent"])
            complexity.setdefault(r["id"], r.get("complexity"))
        ids = list(paper) if a.modules == "all" else a.modules.split(",")
        data = dict(command="python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]),
                    date=datetime.datetime.now().isoformat(timespec="minutes"), sizes=[int(v) for v in a.sizes.split(",")],
                    channels=a.channels, threads=a.threads, stat=a.stat, rounds=a.rounds,
                    blas=attendenv.blas_core(a.attend), load_start=loadavg(),
                    modules=[])
        t0 = time.time()
        sizes = [int(v) for v in a.sizes.split(",")]
        rounds, skipped = {}, {}
        for rnd in range(a.rounds):
            # Round 1 finds the sizes each module can afford; later rounds repeat exactly those,
            # every module in turn, so a burst of other load spoils at most one round of a size.
            for mid in ids:
                want = sizes if rnd == 0 else [p["size"] for p in rounds[mid][0]]
                pts, sk = measure_module(a, mid, paper[mid], want, predict=rnd == 0)
                rounds.setdefault(mid, []).append(pts)
                if rnd == 0:
                    skipped[mid] = sk
        data["modules"] = [summarise(mid, paper[mid], rounds[mid], skipped[mid], complexity[mid], a.channels) for mid in ids]
        data["load_end"] = loadavg()
        data["wall_s"] = round(time.time() - t0, 1)
        os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
        with open(a.out + ".json", "w") as f:
            json.dump(data, f, indent=1)
    plot(data, a.out)
    import compare                      # torch comes in here, after every attend process has run
    # Keep docs/benchmarks.md in step when its raw figures are there.
    bench_json = os.path.join(os.path.dirname(a.out) or ".", "benchmarks.json")
    if os.path.exists(bench_json):
        with open(os.path.join(os.path.dirname(a.out) or ".", "benchmarks.md"), "w") as f:
            f.write(compare.render(json.load(open(bench_json)), data))
    print(compare.scaling_section(data))


if __name__ == "__main__":
    main()
