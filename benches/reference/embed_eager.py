#!/usr/bin/env python3
"""PyTorch eager reference for `cargo bench --bench embed_speed`: the same networks as
reid-pipe's embedder (last stride 1, GeM p=3, L2 normalisation), timed at their best eager
settings (inference_mode, and channels_last when faster), on the CPU or CUDA, in float32 or
float16. Two modes:
- network: a device-resident random batch through the network;
- e2e: what a PyTorch user's embedder does with crops: Pillow's Lanczos resize of each crop
  (`Image.resize`, the LbA code's preprocessing), stacking, upload, normalisation, network,
  download. The crops are the bench's (same sizes and the same formula for their pixels).
Prints one JSON line per configuration:
{"backbone", "batch", "kind", "mode", "crops_per_s", "setting"}.

    embed_eager.py DEVICE HEIGHT WIDTH SECONDS CONFIG [CONFIG ...]
    CONFIG = BACKBONE:KIND:MODE:BATCH, e.g. resnet50:float16:e2e:128
"""
import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def gem(x):
    return (x.float().flatten(2).pow(3).mean(-1) + 1e-12).pow(1.0 / 3)


class Net(torch.nn.Module):
    def __init__(self, backbone):
        super().__init__()
        if backbone == "resnet50":
            m = torchvision.models.resnet50()
            m.layer4[0].conv2.stride = (1, 1)
            m.layer4[0].downsample[0].stride = (1, 1)
            self.body = torch.nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3, m.layer4)
        else:
            m = torchvision.models.mobilenet_v2()
            m.features[14].conv[1][0].stride = (1, 1)  # the depthwise conv of block 14: last stride 1
            self.body = m.features

    def forward(self, x):
        return F.normalize(gem(self.body(x)), dim=1)


def crop_sizes(n):
    """Crop (width, height) i of the bench: 48–198 × 110–360 pixels."""
    return [(48 + (i * 37) % 151, 110 + (i * 53) % 251) for i in range(n)]


def crops(n):
    out = []
    for i, (w, h) in enumerate(crop_sizes(n)):
        idx = np.arange(w * h * 3, dtype=np.uint64)
        px = ((idx * 7 + idx // 97 + i * 13) % 256).astype(np.uint8)
        out.append(Image.fromarray(px.reshape(h, w, 3), "RGB"))
    return out


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def rate(step, batch, seconds, device):
    """Best of two timed rounds (the machine may be shared and noisy)."""
    best = 0.0
    with torch.inference_mode():
        for _ in range(2):
            for _ in range(2):
                step()
            sync(device)
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds / 2:
                step()
                n += 1
            sync(device)
            best = max(best, n * batch / (time.perf_counter() - start))
    return best


def main():
    device = torch.device(sys.argv[1])
    h, w, seconds = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    torch.manual_seed(0)
    nets = {}
    for config in sys.argv[5:]:
        backbone, kind, mode, batch = config.split(":")
        batch = int(batch)
        dtype = {"float32": torch.float32, "float16": torch.float16}[kind]
        if (backbone, kind) not in nets:
            nets[(backbone, kind)] = Net(backbone).eval().to(device=device, dtype=dtype)
        net = nets[(backbone, kind)]
        mean, std = MEAN.to(device), STD.to(device)
        best = (0.0, "")
        for layout in (torch.contiguous_format, torch.channels_last):
            net = net.to(memory_format=layout)
            if mode == "network":
                x = torch.randn(batch, 3, h, w, device=device).to(dtype=dtype, memory_format=layout)
                step = lambda: net(x)
            else:
                images = crops(batch)

                def step():
                    resized = np.stack([np.asarray(im.resize((w, h), Image.LANCZOS)) for im in images])
                    u8 = torch.from_numpy(resized).to(device, non_blocking=True)
                    x = (u8.permute(0, 3, 1, 2).float() / 255 - mean) / std
                    return net(x.to(dtype=dtype, memory_format=layout)).float().cpu()

            r = rate(step, batch, seconds, device)
            if r > best[0]:
                best = (r, "channels_last" if layout == torch.channels_last else "contiguous")
        nets[(backbone, kind)] = net
        print(json.dumps({"backbone": backbone, "batch": batch, "kind": kind, "mode": mode,
                          "crops_per_s": best[0], "setting": best[1]}), flush=True)


if __name__ == "__main__":
    main()
