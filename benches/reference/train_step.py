#!/usr/bin/env python3
"""PyTorch reference for `cargo bench --bench train_speed`: one LbA training step (two stems, a
shared ResNet-50 body with last stride 1, CMAlign at layer3 and layer4, ID + triplet + IC + DT
losses, SGD with Nesterov momentum), written after the reference implementation. Prints JSON:
{"images_per_s": …, "setting": …}.

    train_step.py P K HEIGHT WIDTH STEPS [DEVICE [PRECISION]]

PRECISION: float32 (default), bfloat16 (torch.autocast) or float16 (torch.autocast and a
GradScaler). On CUDA the modules and inputs are channels-last and the clock is read after a
synchronisation. Like reid-pipe's trainer, each step reads the loss value.
"""
import json
import random
import sys
import time

import torch
import torch.nn.functional as F
import torchvision


def gem(x):
    return (x.flatten(2).pow(3).mean(-1) + 1e-12).pow(1.0 / 3)


def min_max(x):
    x = x - x.min(dim=1, keepdim=True)[0]
    return x / (x.max(dim=1, keepdim=True)[0] + 1e-12)


def cmalign(feat, pos, neg, tau=50.0, margin=0.3):
    b, c, h, w = feat.shape
    f = feat.view(b, c, h * w)
    with torch.no_grad():
        mask = min_max(f.norm(dim=1))
    fn = f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def align(idx):
        t, tn = f[idx], fn[idx]
        p = torch.softmax(tau * fn.transpose(1, 2) @ tn, dim=-1)
        warped = t @ p.transpose(1, 2)
        m = mask.unsqueeze(1)
        return p, m * warped + (1 - m) * f

    pp, rp = align(pos)
    _, rn = align(neg)
    with torch.no_grad():
        a = min_max(mask * (pp @ mask[pos].unsqueeze(-1)).squeeze(-1))
    dp = (f - rp + 1e-6).norm(dim=1)
    dn = (f - rn + 1e-6).norm(dim=1)
    l = torch.relu(margin + dp - dn)
    return rp.view(b, c, h, w), (a.mean(0) * l.mean(0)).mean()


def pairs(p, k):
    def half():
        pos, neg = [0] * (p * k), [0] * (p * k)
        for s in range(p):
            for i, j in enumerate(random.sample(range(k), k)):
                pos[k * s + i] = k * s + j
        for s in range(p):
            slots = random.sample([t for t in range(p) if t != s], k)
            perm = random.sample(range(k), k)
            for i in range(k):
                neg[k * s + i] = k * slots[i] + perm[i]
        return pos, neg

    n = p * k
    pv, nv = half()
    pt, nt = half()
    return [i + n for i in pv] + pt, [i + n for i in nv] + nt


def triplet(x, y, margin=0.3):
    d = torch.cdist(x, x).clamp_min(1e-6)
    same = y.unsqueeze(0) == y.unsqueeze(1)
    ap = torch.where(same, d, torch.zeros_like(d)).max(1)[0]
    an = torch.where(same, torch.full_like(d, float("inf")), d).min(1)[0]
    return torch.relu(ap - an + margin).mean()


def main():
    p, k, h, w, steps = (int(a) for a in sys.argv[1:6])
    device = torch.device(sys.argv[6] if len(sys.argv) > 6 else "cpu")
    precision = sys.argv[7] if len(sys.argv) > 7 else "float32"
    amp_dtype = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[precision]
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    layout = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    torch.manual_seed(0)
    random.seed(0)
    vis, th, body = torchvision.models.resnet50(), torchvision.models.resnet50(), torchvision.models.resnet50()
    body.layer4[0].conv2.stride = (1, 1)
    body.layer4[0].downsample[0].stride = (1, 1)
    neck = torch.nn.BatchNorm1d(2048)
    neck.bias.requires_grad_(False)
    cls = torch.nn.Linear(2048, 395, bias=False)
    stem = lambda m, x: m.maxpool(m.relu(m.bn1(m.conv1(x))))
    backbone = [*vis.conv1.parameters(), *vis.bn1.parameters(), *th.conv1.parameters(), *th.bn1.parameters()]
    for layer in (body.layer1, body.layer2, body.layer3, body.layer4):
        backbone += list(layer.parameters())
    opt = torch.optim.SGD(
        [{"params": backbone, "lr": 0.01}, {"params": [neck.weight], "lr": 0.1}, {"params": cls.parameters(), "lr": 0.1}],
        lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True,
    )
    for m in (vis, th, body, neck, cls):
        m.to(device=device, memory_format=layout).train()
    n = p * k
    labels = torch.arange(p).repeat_interleave(k).repeat(2).to(device)

    def step():
        xv = torch.randn(n, 3, h, w, device=device).to(memory_format=layout)
        xt = torch.randn(n, 3, h, w, device=device).to(memory_format=layout)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            loss = forward(xv, xt)
        loss.item()
        opt.zero_grad()
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

    def forward(xv, xt):
        x = torch.cat([stem(vis, xv), stem(th, xt)])
        f3 = body.layer3(body.layer2(body.layer1(x)))
        f4 = body.layer4(f3)
        pos, neg = pairs(p, k)
        r3, dt3 = cmalign(f3, pos, neg)
        ic3 = cls(neck(gem(body.layer4(r3))))
        feat = gem(f4)
        pos, neg = pairs(p, k)
        r4, dt4 = cmalign(f4, pos, neg)
        ic4 = cls(neck(gem(r4)))
        logits = cls(neck(feat))
        return F.cross_entropy(logits, labels) + triplet(feat, labels) + F.cross_entropy(ic3, labels) + F.cross_entropy(ic4, labels) + 0.5 * (dt3 + dt4)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    secs = time.perf_counter() - start
    setting = f"eager, {precision}, " + ("channels_last" if device.type == "cuda" else "contiguous")
    print(json.dumps({"images_per_s": steps * 2 * n / secs, "setting": setting}))


if __name__ == "__main__":
    main()
