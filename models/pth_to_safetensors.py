#!/usr/bin/env python3
"""Convert a torch.save checkpoint (state dict) to safetensors for reid-pipe.

Handles a bare state dict (torchvision's resnet50-19c8e357.pth) and checkpoint dicts that hold
it under `net` (the official LbA checkpoints, e.g. sysu_pretrained.t), `state_dict` or `model`.
Strips DataParallel's `module.` prefix, drops integer `num_batches_tracked` counters, stores
every tensor as float32, and writes atomically. reid-pipe then tells the layout from the keys:

    python models/pth_to_safetensors.py resnet50-19c8e357.pth models/weights/resnet50_imagenet.safetensors
    python models/pth_to_safetensors.py sysu_pretrained.t models/weights/lba_sysu.safetensors

Run it with the torch that scripts/setup.sh installs: /opt/reid-torch/bin/python.
"""
import os
import sys
import tempfile

import torch
from safetensors.torch import save_file


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    src, out = sys.argv[1], os.path.abspath(sys.argv[2])
    obj = torch.load(src, map_location="cpu", weights_only=False)
    state = obj
    if isinstance(obj, dict):
        for key in ("net", "state_dict", "model"):
            if isinstance(obj.get(key), dict):
                state = obj[key]
                break
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        print(f"{src}: no state dict of tensors found (keys: {list(obj)[:10] if isinstance(obj, dict) else type(obj)})", file=sys.stderr)
        return 1
    tensors = {}
    for k, v in state.items():
        if k.endswith("num_batches_tracked"):
            continue
        k = k[len("module."):] if k.startswith("module.") else k
        tensors[k] = v.detach().to(torch.float32).contiguous()
    meta = {"converted_from": os.path.basename(src)}
    for k in ("epoch", "mAP", "cmc", "mINP"):
        if isinstance(obj, dict) and k in obj and not torch.is_tensor(obj[k]):
            meta[k] = str(obj[k])[:200]
    os.makedirs(os.path.dirname(out), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(out), suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.chmod(tmp, 0o644)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"wrote {len(tensors)} tensors to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
