#!/usr/bin/env python3
"""PyTorch eager reference for `cargo bench --bench embed_speed`: the same networks as
reid-pipe's embedder (last stride 1, GeM p=3, L2 normalisation), timed at its best eager settings
(inference_mode, and channels_last when faster). Prints one JSON line per configuration:
{"backbone", "batch", "crops_per_s", "setting"}.

    embed_eager.py HEIGHT WIDTH SECONDS BATCH [BATCH ...]
"""
import json
import sys
import time

import torch
import torch.nn.functional as F
import torchvision


def gem(x):
    return (x.flatten(2).pow(3).mean(-1) + 1e-12).pow(1.0 / 3)


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


def rate(net, x, seconds):
    """Best of two timed rounds (the machine is shared and noisy)."""
    return max(round_(net, x, seconds / 2) for _ in range(2))


def round_(net, x, seconds):
    with torch.inference_mode():
        for _ in range(2):
            net(x)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            net(x)
            n += 1
        return n * x.shape[0] / (time.perf_counter() - start)


def main():
    h, w, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    batches = [int(b) for b in sys.argv[4:]]
    torch.manual_seed(0)
    for backbone in ("resnet50", "mobilenetv2"):
        net = Net(backbone).eval()
        for b in batches:
            x = torch.randn(b, 3, h, w)
            best = (rate(net, x, seconds), "contiguous")
            cl = rate(net.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last), seconds)
            net = net.to(memory_format=torch.contiguous_format)
            if cl > best[0]:
                best = (cl, "channels_last")
            print(json.dumps({"backbone": backbone, "batch": b, "crops_per_s": best[0], "setting": best[1]}), flush=True)


if __name__ == "__main__":
    main()
