#!/usr/bin/env python3
"""References for the weight-import and preprocessing tests, computed with the installed torch,
torchvision and Pillow (independently of reid-pipe).

    weights_refs.py resnet ROOT OUT   rewrites every image of the SYSU-MM01-layout set ROOT at
                                      288x144 (Pillow Lanczos), then writes into OUT:
        sysu_pretrained.t    the official LbA layout: three whole ResNet-50s, the BN neck and a
                             395-way classifier, random weights and BN statistics, saved as
                             torch.save({'net': state_dict, 'epoch': 80})
        resnet50.pth         a torchvision ResNet-50 state dict (random weights, random BN)
        dataparallel.pth     that state dict with DataParallel's `module.` prefixes under
                             `state_dict`, in the legacy (pre-1.6) torch.save format
        official_features.safetensors, torchvision_features.safetensors
                             torch's own test-time features of every image (visible images through
                             the visible stem, cam3/cam6 through the thermal stem; layer4 stride 1,
                             eval mode, GeM p=3, L2): tensor `features`, metadata `paths`
    weights_refs.py bad OUT            unusable files: truncated.t, list.pt, notes.pt (no tensors),
                                      resnet18.pth (another architecture), encoder.pth (unknown keys)
    weights_refs.py torchsave IN OUT   a reid-pipe file IN as a torch.save checkpoint OUT (DataParallel
                                      names under `state_dict`, the classifier cut to 10 identities)
    weights_refs.py pil DIR            for every DIR/*.png: Pillow's
                                      Image.resize((144, 288), Image.LANCZOS) of it, as RGB, into
                                      DIR/<name>.pil.rgb (raw uint8, 288x144x3)
"""
import glob
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from safetensors.torch import save_file

SIZE = (144, 288)  # Pillow's (width, height)
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


def last_stride_one(m):
    m.layer4[0].conv2.stride = (1, 1)
    m.layer4[0].downsample[0].stride = (1, 1)
    return m


def feature(stem, body, x):
    with torch.no_grad():
        y = stem.maxpool(stem.relu(stem.bn1(stem.conv1(x))))
        y = body.layer4(body.layer3(body.layer2(body.layer1(y))))
        g = (y.flatten(2).pow(3).mean(-1) + 1e-12).pow(1 / 3)
        return F.normalize(g, dim=1)


def images(root):
    paths = sorted(glob.glob(os.path.join(root, "cam*", "*", "*.jpg")))
    return [os.path.relpath(p, root) for p in paths]


def load(root, rel):
    a = np.asarray(Image.open(os.path.join(root, rel)).convert("RGB"), dtype=np.float32)
    x = torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0) / 255.0
    return (x - MEAN) / STD


def save_features(out, name, rows, paths):
    save_file({"features": torch.cat(rows).contiguous()}, os.path.join(out, name), metadata={"paths": json.dumps(paths)})


def official_state_dict():
    """The official LbA model's state dict (sysu_pretrained.t layout): three whole ResNet-50s with
    random weights and BN statistics, the BN neck and a 395-way classifier; and the three
    ResNets by prefix."""
    torch.manual_seed(0)
    parts = {}
    net = {}
    for i, prefix in enumerate(("visible_module.visible.", "thermal_module.thermal.", "base_resnet.base.")):
        m = randomize(torchvision.models.resnet50(), i + 1)
        parts[prefix] = m
        for k, v in m.state_dict().items():
            net[prefix + k] = v
    net["bottleneck.weight"] = torch.randn(2048) * 0.01 + 1
    net["bottleneck.bias"] = torch.zeros(2048)
    net["bottleneck.running_mean"] = torch.randn(2048)
    net["bottleneck.running_var"] = torch.rand(2048) + 0.5
    net["bottleneck.num_batches_tracked"] = torch.tensor(100)
    net["classifier.weight"] = torch.randn(395, 2048) * 0.001
    return net, parts


def resnet(root, out):
    rels = images(root)
    for rel in rels:
        p = os.path.join(root, rel)
        Image.open(p).convert("RGB").resize(SIZE, Image.LANCZOS).save(p, quality=95)
    net, parts = official_state_dict()
    torch.save({"net": net, "epoch": 80}, os.path.join(out, "sysu_pretrained.t"))
    tv = randomize(torchvision.models.resnet50(), 7)
    torch.save(tv.state_dict(), os.path.join(out, "resnet50.pth"))
    dp = {"module." + k: v for k, v in tv.state_dict().items()}
    torch.save({"state_dict": dp, "epoch": 3}, os.path.join(out, "dataparallel.pth"), _use_new_zipfile_serialization=False)

    vis, ir = parts["visible_module.visible."].eval(), parts["thermal_module.thermal."].eval()
    body = last_stride_one(parts["base_resnet.base."]).eval()
    tv = last_stride_one(tv).eval()
    official, imagenet = [], []
    for rel in rels:
        x = load(root, rel)
        cam = rel.split(os.sep)[0]
        stem = ir if cam in ("cam3", "cam6") else vis
        official.append(feature(stem, body, x))
        imagenet.append(feature(tv, tv, x))
    save_features(out, "official_features.safetensors", official, rels)
    save_features(out, "torchvision_features.safetensors", imagenet, rels)


def bad(out):
    """Files that are not usable weights, each for its own reason."""
    path = os.path.join(out, "truncated.t")
    torch.save({"net": {"conv1.weight": torch.randn(64, 3, 7, 7)}}, path)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    torch.save([1, 2, 3], os.path.join(out, "list.pt"))
    torch.save({"lr": 0.1, "name": "notes"}, os.path.join(out, "notes.pt"))
    torch.save(torchvision.models.resnet18().state_dict(), os.path.join(out, "resnet18.pth"))
    torch.save({"encoder.weight": torch.randn(4, 4), "decoder.weight": torch.randn(4, 4)}, os.path.join(out, "encoder.pth"))


def torchsave(src, out):
    """A reid-pipe safetensors file as someone else's checkpoint: DataParallel names under
    `state_dict`, and a classifier of 10 identities."""
    from safetensors.torch import load_file

    sd = {"module." + k: v for k, v in load_file(src).items()}
    sd["module.classifier.weight"] = sd["module.classifier.weight"][:10].clone()
    torch.save({"state_dict": sd, "epoch": 1}, out)


def pil(d):
    for p in sorted(glob.glob(os.path.join(d, "*.png"))):
        img = Image.open(p)
        img = img.convert("RGB") if img.mode != "L" else img
        r = np.asarray(img.resize(SIZE, Image.LANCZOS).convert("RGB"), dtype=np.uint8)
        with open(p[: -len(".png")] + ".pil.rgb", "wb") as f:
            f.write(r.tobytes())


if __name__ == "__main__":
    if sys.argv[1] == "resnet":
        resnet(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "bad":
        bad(sys.argv[2])
    elif sys.argv[1] == "torchsave":
        torchsave(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "pil":
        pil(sys.argv[2])
    else:
        sys.exit(__doc__)
