#!/usr/bin/env python3
"""End task against kernel speedup for whole models (issue 13): for each model, layer set,
codebook count and learner objective, calibrate a bundle with `maddconv model calibrate` on the
GPU adapter, score it with `maddconv model eval --json` on the test inputs, and write one CSV row
and one point of an SVG plot per run.

    python3 scripts/frontier.py [--maddconv target/release/maddconv] [--data ../shared/data]
        [--out docs/frontier] [--codebooks 16,32,64] [--models silero,ddddocr]
        [--objectives none,graph,tied,exact] [--layer-sets LABEL,...] [--dry-run]
        [--plot-only A.csv B.csv ...]

Objectives: `none` (plain output), `graph` (fit for the graph's activations), `tied` (graph
activations with `--learner tied`, whose C is rounded to a multiple of each layer's kernel
area: 16, 32, 64 become 15, 33, 63 for silero's 3-tap convs and 18, 36, 63 for ddddocr's 3×3
ones), each with every layer refit to its own output (`--targets own`, as when these were
first measured); `exact`: graph activations with the layers refit to the exact model's outputs
(`--targets exact`; `graph` + `exact` is the default of `model calibrate`).

Layer sets: silero's four encoder convs; ddddocr's `Conv_248+Conv_251` (the stride-8
classification pair, 14.1 % of the conv MACs, calibrated with `--holdout 0.4`) and
`stride8+cls16` (the whole stride-8 head and the stride-16 classification pair, 31.7 % of the
MACs, calibrated on every calibration photo with `--holdout 0`). Each run's points are joined
by layer set and objective in the plot.

Speedup: the sum of the replaced layers' direct-kernel times over the sum of their look-up
times, as `calibrate` measured them on the adapter (median of 10 interleaved runs each, stored in
the bundle). End task: frame agreement at 0.5 (silero VAD, test clips) and min(box recall,
precision) at IoU 0.5 (ddddocr, test photos with text). Only the Python standard library.
"""

import argparse
import csv
import json
import os
import struct
import subprocess
import sys
import tempfile

SILERO_LAYERS = "/encoder.0/Conv,/encoder.1/Conv,/encoder.2/Conv,/encoder.3/Conv"
DDDDOCR_HEAD = "Conv_248,Conv_251"
DDDDOCR_STRIDE8_CLS16 = "Conv_248,Conv_251,Conv_255,Conv_258,Conv_269,Conv_272"


def runs(data):
    s = os.path.join(data, "models/silero_vad")
    d = os.path.join(data, "models/ddddocr_det")
    silero = dict(
        model=os.path.join(s, "model.onnx"),
        calib=[f"input={s}/calib_input.npy", f"h={s}/calib_h.npy", f"c={s}/calib_c.npy"],
        test=[f"input={s}/test_input.npy", f"h={s}/test_h.npy", f"c={s}/test_c.npy"],
        metric="threshold:0.5",
        extra=[],
    )
    ddddocr = dict(
        model=os.path.join(d, "model.onnx"),
        calib=[f"{d}/calib.npy"],
        test=[f"{d}/test_text.npy"],
        metric="yolox",
        extra=["--holdout", "0.4"],
    )
    return {
        "silero": [("encoder.0-3", SILERO_LAYERS, silero)],
        "ddddocr": [
            ("Conv_248+Conv_251", DDDDOCR_HEAD, ddddocr),
            ("stride8+cls16", DDDDOCR_STRIDE8_CLS16, dict(ddddocr, extra=["--holdout", "0"])),
        ],
    }


def bundle_settings(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    return json.loads(header["__metadata__"]["maddconv"])["settings"]


def one(args, model, label, layers, spec, c, objective, tmp):
    bundle = os.path.join(tmp, "b.safetensors")
    inputs = sum((["--input", i] for i in spec["calib"]), [])
    # "tied": the default objective (graph activations) with tied per-pixel trees, C rounded by
    # the learner to a multiple of each layer's kernel area.
    learner = ["--learner", "tied"] if objective == "tied" else []
    activation = "graph" if objective in ("tied", "exact") else objective
    targets = "exact" if objective == "exact" else "own"
    cal = [args.maddconv, "model", "calibrate", spec["model"], *inputs, "--layers", layers,
           "--codebooks", str(c), "--metric", spec["metric"], "--activation", activation,
           "--targets", targets, *learner, *spec["extra"], "-o", bundle]
    tests = sum((["--input", i] for i in spec["test"]), [])
    ev = [args.maddconv, "model", "eval", spec["model"], "--tables", bundle, *tests,
          "--metric", spec["metric"], "--json"]
    print(" ".join(cal), file=sys.stderr)
    if args.dry_run:
        return None
    subprocess.run(cal, check=True, stdout=subprocess.DEVNULL)
    out = json.loads(subprocess.run(ev, check=True, capture_output=True, text=True).stdout)
    times = bundle_settings(bundle).get("kernel_times") or []
    direct = sum(t["direct_ms"] for t in times)
    lookup = sum(t["lookup_ms"] for t in times)
    o = out["outputs"][0]
    layer_nmse = [1 - l["nmse"] for l in out["layers"]]
    after = [1 - l["after_activation"][1] for l in out["layers"] if l.get("after_activation")]
    return dict(
        model=model, layers=label, codebooks=c, objective=objective,
        speedup=round(direct / lookup, 3) if lookup > 0 else "",
        end_task=round(o["agreement"][0], 4), decisions=o["agreement"][1],
        output_one_minus_nmse=round(o["one_minus_nmse"], 4),
        layers_one_minus_nmse=" ".join(f"{v:.3f}" for v in layer_nmse),
        layers_after_activation=" ".join(f"{v:.3f}" for v in after),
    )


def svg(rows, path):
    """One panel per model: end task (y) against speedup (x), one line per layer set and
    objective."""
    models = sorted({r["model"] for r in rows})
    # The plot takes the top `h` pixels of each panel, the legend the lines below it.
    w, h, pad = 420, 260, 48
    rows_per_model = {m: len({(r["layers"], r["objective"]) for r in rows if r["model"] == m})
                      for m in models}
    total_h = h + 14 * max(rows_per_model.values(), default=0) + 6
    colours = {"none": "#1f77b4", "graph": "#d62728", "tied": "#2ca02c", "exact": "#9467bd"}
    legend = {"none": "--activation none", "graph": "--activation graph",
              "tied": "--learner tied (C rounded to the taps)",
              "exact": "graph, --targets exact (default)"}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w * len(models)}" height="{total_h}" '
             'font-family="sans-serif" font-size="11">']
    for k, m in enumerate(models):
        pts = [r for r in rows if r["model"] == m and r["speedup"] != ""]
        if not pts:
            continue
        x0 = k * w
        xs = [float(r["speedup"]) for r in pts]
        ys = [float(r["end_task"]) for r in pts]
        xlo, xhi = 0.0, max(xs) * 1.1
        ylo, yhi = min(min(ys), 0.95) - 0.01, 1.0
        fx = lambda v: x0 + pad + (v - xlo) / (xhi - xlo) * (w - 2 * pad)
        fy = lambda v: h - pad - (v - ylo) / (yhi - ylo) * (h - 2 * pad)
        parts.append(f'<rect x="{x0 + pad}" y="{pad}" width="{w - 2 * pad}" height="{h - 2 * pad}" '
                     'fill="none" stroke="#999"/>')
        parts.append(f'<text x="{x0 + w / 2}" y="16" text-anchor="middle">{m}: end task vs '
                     'kernel speedup</text>')
        parts.append(f'<text x="{x0 + w / 2}" y="{h - 8}" text-anchor="middle">speedup of the '
                     'replaced layers (direct / look-up)</text>')
        for t in range(5):
            v = ylo + (yhi - ylo) * t / 4
            parts.append(f'<text x="{x0 + pad - 4}" y="{fy(v) + 4}" text-anchor="end">{v:.3f}</text>')
            u = xlo + (xhi - xlo) * t / 4
            parts.append(f'<text x="{fx(u)}" y="{h - pad + 14}" text-anchor="middle">{u:.1f}</text>')
        sets = sorted({r["layers"] for r in pts})
        keys = [(ls, obj) for ls in sets for obj in colours
                if any(r["layers"] == ls and r["objective"] == obj for r in pts)]
        for i, (ls, obj) in enumerate(keys):
            col = colours[obj]
            dash = ' stroke-dasharray="4 3"' if sets.index(ls) else ""
            line = sorted((float(r["speedup"]), float(r["end_task"]), r["codebooks"])
                          for r in pts if r["objective"] == obj and r["layers"] == ls)
            if len(line) > 1:
                d = " ".join(f"{fx(a):.1f},{fy(b):.1f}" for a, b, _ in line)
                parts.append(f'<polyline points="{d}" fill="none" stroke="{col}"{dash}/>')
            for a, b, c in line:
                parts.append(f'<circle cx="{fx(a):.1f}" cy="{fy(b):.1f}" r="3" fill="{col}"/>')
                parts.append(f'<text x="{fx(a) + 5:.1f}" y="{fy(b) - 5:.1f}" fill="{col}">C={c}</text>')
            label = legend[obj] + (f" ({ls}{', dashed' if dash else ''})" if len(sets) > 1 else "")
            parts.append(f'<text x="{x0 + 8}" y="{h + 12 + 14 * i}" fill="{col}">'
                         + label + '</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--maddconv", default="target/release/maddconv")
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--out", default="docs/frontier")
    p.add_argument("--codebooks", default="16,32,64")
    p.add_argument("--models", default="silero,ddddocr")
    p.add_argument("--objectives", default="none,graph")
    p.add_argument("--layer-sets", default="",
                   help="only these layer sets (labels, comma-separated; default: every one)")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--plot-only", nargs="+", metavar="CSV",
                   help="no runs: join these CSVs (of earlier runs) into --out .csv and .svg")
    args = p.parse_args()
    all_runs = runs(args.data)
    rows = []
    if args.plot_only:
        for path in args.plot_only:
            with open(path, newline="") as f:
                rows.extend(csv.DictReader(f))
        args.models = ""
    with tempfile.TemporaryDirectory() as tmp:
        for model in filter(None, args.models.split(",")):
            for label, layers, spec in all_runs[model]:
                if args.layer_sets and label not in args.layer_sets.split(","):
                    continue
                for c in [int(v) for v in args.codebooks.split(",")]:
                    for obj in args.objectives.split(","):
                        r = one(args, model, label, layers, spec, c, obj, tmp)
                        if r:
                            rows.append(r)
                            print(r, file=sys.stderr)
    if not rows:
        return
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    svg(rows, args.out + ".svg")
    print(f"wrote {args.out}.csv and {args.out}.svg", file=sys.stderr)


if __name__ == "__main__":
    main()
