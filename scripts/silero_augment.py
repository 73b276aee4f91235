#!/usr/bin/env python3
"""More calibration frames for silero VAD from the same calibration clips (issue 13, measured
in BENCHMARKS.md "More calibration windows"): re-framing and gain.

silero's `calib_input.npy` holds 32 ms frames (64 context samples + 512 new ones) of three
clips; the frames of a clip tile its audio. This script checks that tiling (each frame's
context is the previous frame's tail, a clip's first context is zeros), rebuilds each clip's
audio and writes, into OUT:

  shift2.npy / shift4.npy  the clips framed at 2 / 4 offsets (0, 256 or 0, 128, 256, 384
                           samples): real frames of the same audio, as a stream cut elsewhere
                           gives them
  gain3.npy / gain4.npy    the frames at gains 1, 0.5, 2 / 1, 0.7, 1.4, 0.5 (clipped to the
                           int16 range)

Only calibration clips are read; the test clips are never touched. Needs numpy.

    python3 scripts/silero_augment.py ../shared/data/models/silero_vad out/silero_augment
"""
import json
import sys
from pathlib import Path

import numpy as np

FRAME, CONTEXT = 512, 64


def clip_streams(pack):
    x = np.load(pack / "calib_input.npy")
    clips = json.loads((pack / "clips.json").read_text())["calib"]
    streams = []
    for c in clips:
        a, b = c["rows"]
        rows = x[a:b]
        if rows.shape[1] != CONTEXT + FRAME or np.any(rows[0, :CONTEXT] != 0):
            sys.exit(f"{c['clip']}: not framed as {CONTEXT} + {FRAME} with a zero first context")
        if not np.array_equal(rows[1:, :CONTEXT], rows[:-1, -CONTEXT:]):
            sys.exit(f"{c['clip']}: a frame's context is not the previous frame's tail")
        streams.append(rows[:, CONTEXT:].reshape(-1))
    return x, streams


def frames(audio, offset):
    """Frames of `audio` starting at `offset`, each with the 64 samples before it as context."""
    n = (len(audio) - offset) // FRAME
    padded = np.concatenate([np.zeros(CONTEXT, audio.dtype), audio])
    out = np.empty((n, CONTEXT + FRAME), np.float32)
    for i in range(n):
        s = offset + i * FRAME  # start of the new samples in `audio`
        out[i] = padded[s : s + CONTEXT + FRAME]
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    pack, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    x, streams = clip_streams(pack)
    if not np.array_equal(np.concatenate([frames(s, 0) for s in streams]), x):
        sys.exit("re-framing at offset 0 does not give calib_input.npy back")
    sets = {}
    for k in (2, 4):
        sets[f"shift{k}"] = np.concatenate(
            [frames(s, j * FRAME // k) for s in streams for j in range(k)]
        )
    for name, gains in (("gain3", (1, 0.5, 2)), ("gain4", (1, 0.7, 1.4, 0.5))):
        sets[name] = np.clip(np.concatenate([x * g for g in gains]), -1, 32767 / 32768)
    for name, a in sets.items():
        np.save(out / f"{name}.npy", a.astype(np.float32))
        print(f"{out / name}.npy: {a.shape[0]} frames")


if __name__ == "__main__":
    main()
