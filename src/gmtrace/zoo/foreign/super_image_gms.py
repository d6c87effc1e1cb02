"""Foreign families of `super-image` (eugenesiow/super-image): single-image
super-resolution networks of other people's code, the kind of generator a user
meets as an "AI upscaler", built, trained and run by the package.

Each family is one of the package's model classes (EDSR, MSRN, CARN, PAN, A2N,
RCAN), built from its own config class at a drawn scale (2 or 4) and width,
and trained by the package's own `Trainer`: its `nn.L1Loss` between the network's
output and the high-resolution crop, its Adam, its learning-rate schedule (a tenth
after 80 % of the epochs), its `TrainDataset` (random flips and quarter turns of
each pair) and its `EvalDataset` after each epoch. The pairs are gmtrace's real
crops (high resolution) and the same crops shrunk by the scale with bicubic
resampling (low resolution), written as PNG files, which is how the package's data
sets are given. The Trainer runs whole epochs of equal length and needs two at
least (its schedule divides by 80 % of their number), so a GM trains two epochs of
half its step budget each: an odd budget trains one step more, and the row records
the steps it trained.

Images: each held-out crop shrunk the same way and enlarged by the trained network
(a translator: its output is aligned pixel for pixel with the crop, kept as its
pair), written to 8 bits by the package's own `ImageLoader.save_image` (OpenCV's
PNG writer: times 255, rounded and clipped) and read back. The GM's config records
the PSNR of its images against the photographs beside that of bicubic enlargement
of the same inputs (`psnr`, `bicubic_psnr`): how far from a working upscaler the
short training left it. A GM more than 6 dB below bicubic fails and is recorded as
failed (`pretrained.in_register`, the pretrained tier's check): its images would be
noise, not an upscaler's.

Left out: AWSRN. Its forward maps pixels as if they were 0-255
(`(x - rgb_mean * 255) / 127.5`) while the package's data sets give 0-1; trained by
its own Trainer (310 steps, x2) it drew a coloured grid, 20.6 dB below bicubic
enlargement (a session's build, 2026-12-06).

Configs the CPU budget allows: fewer blocks and channels than the package's
defaults; `rgb_range` 1 where a config has one, the range of the package's own data
sets (pixels / 255), so its mean shift removes the mean of those pixels.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from super_image import (
    A2nConfig,
    A2nModel,
    CarnConfig,
    CarnModel,
    EdsrConfig,
    EdsrModel,
    MsrnConfig,
    MsrnModel,
    PanConfig,
    PanModel,
    RcanConfig,
    RcanModel,
    Trainer,
    TrainingArguments,
)
from super_image.data import EvalDataset, ImageLoader, TrainDataset

from gmtrace.zoo.foreign.base import Family, ForeignGM, ForeignJob, output_to_log, register
from gmtrace.zoo.pretrained import bicubic, in_register

PACKAGE = "super-image"
EPOCHS = 2  # the fewest the Trainer's schedule allows
EVAL_PAIRS = 8  # the pairs its EvalDataset scores after each epoch
# three times the preset's steps (default: 120-600): in a session's check (EDSR x2,
# 8 blocks of 32 channels, batch 16, learning rate 1e-3), 100 steps left its images
# 5.0 dB below bicubic enlargement of the same inputs, 400 steps 0.6 dB
STEPS_FACTOR = 3


def shrink(crop: np.ndarray, scale: int) -> Image.Image:
    """A uint8 crop [H, W, 3] shrunk `scale` times by bicubic resampling."""
    img = Image.fromarray(crop)
    return img.resize((img.width // scale, img.height // scale), Image.Resampling.BICUBIC)


def write_pairs(crops: np.ndarray, scale: int, folder: Path) -> list[dict[str, str]]:
    """Each crop as a high- and low-resolution PNG in `folder`: the package's data
    set entries, {"lr": path, "hr": path}."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, crop in enumerate(crops):
        hr, lr = folder / f"{i:05d}_hr.png", folder / f"{i:05d}_lr.png"
        Image.fromarray(crop).save(hr)
        shrink(crop, scale).save(lr)
        entries.append({"lr": str(lr), "hr": str(hr)})
    return entries


def _common(rng: np.random.Generator) -> dict:
    return {
        "scale": int(rng.choice([2, 4])),
        "lr": float(rng.choice([5e-4, 1e-3])),
    }


def _edsr(rng: np.random.Generator) -> dict:
    return {
        **_common(rng),
        "n_resblocks": int(rng.choice([4, 8, 12])),
        "n_feats": int(rng.choice([32, 48, 64])),
        "res_scale": float(rng.choice([1.0, 0.1])),
    }


def _msrn(rng: np.random.Generator) -> dict:
    return {
        **_common(rng),
        "n_blocks": int(rng.choice([2, 4])),
        "n_feats": int(rng.choice([32, 48])),
    }


def _carn(rng: np.random.Generator) -> dict:
    return _common(rng)  # CARN's config fixes its widths and blocks


def _pan(rng: np.random.Generator) -> dict:
    return {
        **_common(rng),
        "nf": int(rng.choice([24, 32, 40])),
        "unf": int(rng.choice([16, 24])),
        "nb": int(rng.choice([8, 12, 16])),
    }


def _rcan(rng: np.random.Generator) -> dict:
    return {
        **_common(rng),
        "n_resgroups": int(rng.choice([2, 3, 4])),
        "n_resblocks": int(rng.choice([3, 4, 6])),
        "n_feats": int(rng.choice([32, 48])),
        "reduction": int(rng.choice([8, 16])),
    }


# family -> (model class, config class, config drawer, the drawn values its config
# takes, whether the config has an `rgb_range`)
MODELS = {
    "edsr": (EdsrModel, EdsrConfig, _edsr, ("n_resblocks", "n_feats", "res_scale"), True),
    "msrn": (MsrnModel, MsrnConfig, _msrn, ("n_blocks", "n_feats"), True),
    "carn": (CarnModel, CarnConfig, _carn, (), False),
    "pan": (PanModel, PanConfig, _pan, ("nf", "unf", "nb"), False),
    "a2n": (A2nModel, A2nConfig, _pan, ("nf", "unf", "nb"), False),
    "rcan": (
        RcanModel,
        RcanConfig,
        _rcan,
        ("n_resgroups", "n_resblocks", "n_feats", "reduction"),
        True,
    ),
}


def build_model(kind: str, cfg: dict):
    """The package's model of family `kind` from its config class and `cfg`."""
    model_cls, config_cls, _, args, has_range = MODELS[kind]
    extra = {"rgb_range": 1} if has_range else {}
    return model_cls(config_cls(scale=cfg["scale"], **{a: cfg[a] for a in args}, **extra))


def _train_and_sample(kind: str, job: ForeignJob) -> ForeignGM:
    cfg = job.config
    scale = cfg["scale"]
    model = build_model(kind, cfg)
    per_epoch = -(-job.steps // EPOCHS)  # the Trainer's epochs are equal: round up
    rng = np.random.default_rng(job.seed)
    train = job.crops[rng.integers(0, len(job.crops), per_epoch * job.batch)]
    evals = job.crops[rng.choice(len(job.crops), EVAL_PAIRS, replace=False)]
    args = TrainingArguments(
        output_dir=str(job.workdir / "trainer"),
        learning_rate=cfg["lr"],
        num_train_epochs=EPOCHS,
        per_device_train_batch_size=job.batch,
        seed=job.seed,
        dataloader_pin_memory=False,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=TrainDataset(
            write_pairs(train, scale, job.workdir / "train"), patch_size=job.resolution // scale
        ),
        eval_dataset=EvalDataset(write_pairs(evals, scale, job.workdir / "eval")),
    )
    with output_to_log(job):
        trainer.train()
    model = trainer.model.cpu().eval()
    images, baseline = [], []
    out = job.workdir / "out.png"
    # its writer takes the float image and warns on the terminal that it writes 8 bits
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    with torch.no_grad():
        for crop in job.inputs:
            small = shrink(crop, scale)
            ImageLoader.save_image(model(ImageLoader.load_image(small)), str(out))
            images.append(np.asarray(Image.open(out).convert("RGB")))
            baseline.append(bicubic(np.asarray(small, np.float32) / 255.0, scale))
    side = job.resolution // scale
    images = np.stack(images)
    fidelity, floor = in_register(images, np.stack(baseline), job.inputs, job.name)
    return ForeignGM(
        images=images,
        module=model,
        example=(torch.zeros(1, 3, side, side),),
        losses=("l1",),
        loss_source="super_image Trainer.train: nn.L1Loss between the model's output and "
        "the high-resolution crop",
        sampler=f"x{scale} enlargement of the crop shrunk by bicubic resampling; "
        "ImageLoader.save_image",
        steps=per_epoch * EPOCHS,
        # against the photographs: the network's images and plain bicubic enlargement
        checks={"psnr": round(fidelity, 2), "bicubic_psnr": round(floor, 2)},
    )


def _family(kind: str, title: str) -> Family:
    return Family(
        f"superimage-{kind}",
        PACKAGE,
        "translate",
        MODELS[kind][2],
        lambda job: _train_and_sample(kind, job),
        f"{title} super-resolution (x2 or x4), trained by super-image's Trainer",
        steps_factor=STEPS_FACTOR,
    )


for _kind, _title in (
    ("edsr", "EDSR"),
    ("msrn", "MSRN"),
    ("carn", "CARN"),
    ("pan", "PAN"),
    ("a2n", "A2N"),
    ("rcan", "RCAN"),
):
    register(_family(_kind, _title))
