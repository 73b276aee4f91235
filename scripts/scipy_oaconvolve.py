#!/usr/bin/env python3
"""scipy's overlap-add convolution as a second CPU reference for `maddconv bench --fft`.

    python3 scripts/scipy_oaconvolve.py [--small] [--reps N] [--json FILE]

Needs numpy and scipy (`pip install numpy scipy`). The same sizes as `bench --fft`: a 2^20-sample
signal of uniform noise in [-1, 1), batch 1, "same" output; filters of seeded noise under
exp(-6 t / K), unit energy per row; K = 16 ... 65 536; 1 -> 1 and 16 -> 16 channels (--small:
K = 16, 256 on 2^14 samples, 1 -> 1 and 4 -> 4). A layer's output channel o is
sum_c correlate(x[c], h[o, c]) -- the ML convention, so each filter is reversed for
`scipy.signal.oaconvolve`. All output channels and input channels go to one oaconvolve call over
a (O, C, L) broadcast and are summed over C (scipy picks the block size; one thread: scipy.fft's
default `workers`).

Per row: the median wall time of the float32 convolution (the inputs are float32; scipy.fft
keeps single precision), and its relative L2 error against the same convolution in float64. The
noise is numpy's (seeded), not the benchmark's SplitMix64: the errors and times do not depend on
the noise itself.
"""

import argparse
import json
import statistics
import sys
import time

try:
    import numpy as np
    from scipy import signal
    import scipy
except ImportError as e:  # pragma: no cover
    sys.exit(f"{e}: this script needs numpy and scipy (pip install numpy scipy)")


def sizes(small):
    if small:
        return [16, 256], 1 << 14, [1, 4]
    return [16, 64, 256, 1024, 4096, 16384, 65536], 1 << 20, [1, 16]


def filters(channels, k, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(k) / k
    h = rng.uniform(-1.0, 1.0, size=(channels, channels, k)) * np.exp(-6.0 * t)
    h /= np.sqrt((h**2).sum(axis=-1, keepdims=True))
    return h


def layer(x, h):
    """x: (C, L), h: (O, C, K) -> (O, L), "same" cross-correlation summed over C."""
    y = signal.oaconvolve(x[None, :, :], h[:, :, ::-1], mode="full", axes=-1).sum(axis=1)
    k = h.shape[-1]
    left = k // 2  # "same" padding (K / 2, K - 1 - K / 2), as the benchmark
    start = k - 1 - left
    return y[:, start : start + x.shape[-1]]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", help="also write the rows to this file")
    a = ap.parse_args()
    if a.reps < 1:
        sys.exit(f"--reps {a.reps}: must be at least 1")
    ks, length, channel_counts = sizes(a.small)
    rows = []
    print(f"scipy {scipy.__version__}, numpy {np.__version__}", file=sys.stderr)
    print("| K | C→O | scipy oaconvolve f32 ms | rel L2 vs f64 | reps |")
    print("|---|---|---|---|---|")
    for c in channel_counts:
        x64 = np.random.default_rng(7 + c).uniform(-1.0, 1.0, size=(c, length))
        x32 = x64.astype(np.float32)
        for k in ks:
            h64 = filters(c, k, k)
            h32 = h64.astype(np.float32)
            exact = layer(x64, h64)
            reps = a.reps if c * c * length * np.log2(k + 1) < 1e9 else min(a.reps, 3)
            times = []
            for _ in range(reps + 1):  # the first run warms up
                t0 = time.perf_counter()
                y = layer(x32, h32)
                times.append((time.perf_counter() - t0) * 1e3)
            if y.dtype != np.float32:
                sys.exit(f"scipy returned {y.dtype} for float32 inputs")
            err = float(
                np.sqrt(((y.astype(np.float64) - exact) ** 2).sum() / (exact**2).sum())
            )
            ms = statistics.median(times[1:])
            rows.append(
                {"k": k, "channels": c, "signal": length, "ms": ms, "rel_l2_vs_f64": err,
                 "repetitions": reps, "scipy": scipy.__version__}
            )
            print(f"| {k} | {c}→{c} | {ms:.1f} | {err:.1e} | {reps} |", flush=True)
    if a.json:
        with open(a.json + ".tmp", "w") as f:
            json.dump(rows, f, indent=1)
        import os

        os.replace(a.json + ".tmp", a.json)


if __name__ == "__main__":
    main()
