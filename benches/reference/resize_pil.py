#!/usr/bin/env python3
"""Pillow reference for `cargo bench --bench resize_speed`: the reference code's resize,
`Image.fromarray(crop).resize((W, H), Image.LANCZOS)` back to a numpy array, on crops of the given
sizes (random RGB pixels; the content does not change the work). Prints one JSON line:
{"crops_per_s"}.

    resize_pil.py HEIGHT WIDTH SECONDS W1xH1 [WxH ...]
"""
import json
import sys
import time

import numpy as np
from PIL import Image


def main():
    h, w, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    rng = np.random.default_rng(0)
    crops = []
    for size in sys.argv[4:]:
        cw, ch = (int(v) for v in size.split("x"))
        crops.append(rng.integers(0, 256, (ch, cw, 3), dtype=np.uint8))
    best = 0.0
    for _ in range(2):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 2:
            for c in crops:
                np.asarray(Image.fromarray(c).resize((w, h), Image.LANCZOS))
            n += len(crops)
        best = max(best, n / (time.perf_counter() - start))
    print(json.dumps({"crops_per_s": best}))


if __name__ == "__main__":
    main()
