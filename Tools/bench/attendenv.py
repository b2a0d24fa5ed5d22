"""The environment `attend` runs in for the benchmark scripts, with no heavy imports: scaling.py
reads each attend child's peak resident size (ru_maxrss), which on Linux includes the parent's
resident size at the fork, so the parent must stay small (no torch) while it measures."""
import os
import subprocess


def loadavg():
    a = os.getloadavg()
    return f"{a[0]:.2f}, {a[1]:.2f}, {a[2]:.2f}"


# Environment of the attend processes: inherited, except OPENBLAS_CORETYPE when --blas-core says.
ATTEND_ENV = None


def set_blas_core(choice):
    """inherit: leave OPENBLAS_CORETYPE as the environment has it; auto: unset it (OpenBLAS picks
    the kernels for the CPU it finds); NAME: force that core (e.g. Haswell, SkylakeX)."""
    global ATTEND_ENV
    env = dict(os.environ)
    if choice == "auto":
        env.pop("OPENBLAS_CORETYPE", None)
    elif choice != "inherit":
        env["OPENBLAS_CORETYPE"] = choice
    ATTEND_ENV = env


def blas_core(attend):
    """The OpenBLAS kernel set attend runs with, as OpenBLAS reports it (OPENBLAS_VERBOSE=2)."""
    env = dict(ATTEND_ENV or os.environ, OPENBLAS_VERBOSE="2")
    r = subprocess.run([attend, "list", "--ids"], capture_output=True, text=True, env=env)
    core = next((l.split(":", 1)[1].strip() for l in (r.stdout + r.stderr).splitlines() if l.startswith("Core:")), "?")
    forced = (ATTEND_ENV or os.environ).get("OPENBLAS_CORETYPE")
    return f"{core}" + (f" (OPENBLAS_CORETYPE={forced} in the environment)" if forced else " (detected)")
