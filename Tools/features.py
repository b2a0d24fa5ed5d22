"""Save a backbone's stage output for a photo as .npy (1×C×H×W), for `attend map --features`
and `attend run`.

  python Tools/features.py photo.jpg --model resnet50 --stage 3 --out photo-layer3.npy \
      [--pretrained | --checkpoint weights.pth] [--size 512]

Any timm model with `features_only` support works; `--stage` picks one of its feature levels
(printed with their channels and strides). Pretrained weights download from the model hub, so
`--pretrained` needs the network; `--checkpoint` loads a local state_dict instead. Without
either the backbone is random (useful only to test the plumbing). The photo is resized so its
long side is --size, normalised with the model's mean/std.
"""
import argparse
import sys

import numpy as np
import timm
import torch
from PIL import Image


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image")
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--stage", type=int, default=3, help="feature level index (0 = highest resolution)")
    ap.add_argument("--size", type=int, default=512, help="long side of the resized photo")
    ap.add_argument("--pretrained", action="store_true")
    ap.add_argument("--checkpoint")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    m = timm.create_model(a.model, pretrained=a.pretrained, features_only=True).eval()
    if a.checkpoint:
        sd = torch.load(a.checkpoint, map_location="cpu")
        missing, unexpected = m.load_state_dict(sd, strict=False)
        print(f"checkpoint: {len(missing)} missing, {len(unexpected)} unexpected keys", file=sys.stderr)
    info = m.feature_info
    levels = [(i, d["num_chs"], d["reduction"]) for i, d in enumerate(info.get_dicts())]
    print("levels (index, channels, stride):", levels, file=sys.stderr)
    if not 0 <= a.stage < len(levels):
        sys.exit(f"--stage must be in 0..{len(levels) - 1}")

    img = Image.open(a.image).convert("RGB")
    s = a.size / max(img.size)
    img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.BILINEAR)
    cfg = m.pretrained_cfg if hasattr(m, "pretrained_cfg") else {}
    mean = np.array(cfg.get("mean", (0.485, 0.456, 0.406)), np.float32)
    std = np.array(cfg.get("std", (0.229, 0.224, 0.225)), np.float32)
    x = (np.asarray(img, np.float32) / 255 - mean) / std
    x = torch.from_numpy(x.transpose(2, 0, 1)[None].copy())
    with torch.no_grad():
        feats = m(x)[a.stage]
    np.save(a.out, feats.numpy().astype(np.float32))
    print(f"{a.out}: {tuple(feats.shape)}", file=sys.stderr)


if __name__ == "__main__":
    main()
