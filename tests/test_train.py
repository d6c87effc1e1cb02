"""Training end to end on the tiny zoo: files, metrics, resume, reload, errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from gmtrace.data.dataset import GMDataset
from gmtrace.data.loader import load_bank
from gmtrace.nets.config import FENConfig, ModelConfig, ParserConfig
from gmtrace.readout.embedding import open_set_score
from gmtrace.readout.inference import infer
from gmtrace.readout.saved import load_model
from gmtrace.train.config import TrainConfig
from gmtrace.train.loop import CHECKPOINT, TrainError, fingerprint_loss, train

SMALL = ModelConfig(
    fen=FENConfig(depth=3, width=8),
    parser=ParserConfig(width=8, stages=2, embed=16, dropout=0.0),
    proj=8,
)


@pytest.fixture(scope="module")
def zoo(tiny_zoo_dir: Path) -> GMDataset:
    return GMDataset.from_zoo(tiny_zoo_dir)


def cfg(steps: int, **kw) -> TrainConfig:
    return TrainConfig(
        steps=steps, batch=8, image_size=32, per_gm=6, log_every=2, ckpt_every=2, **kw
    )


def test_train_writes_model_and_metrics(zoo: GMDataset, tmp_path: Path):
    result = train(zoo, tmp_path / "m", cfg(4), SMALL)
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"model.safetensors", "readout.safetensors", "config.json", "metrics.jsonl"} <= files
    assert CHECKPOINT in files
    lines = [json.loads(x) for x in (tmp_path / "m" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [2, 4]
    assert all(torch.isfinite(torch.tensor(m["total"])) for m in lines)
    assert result["n_gms"] == len(zoo) and result["n_fake"] == 6 * len(zoo)
    saved = load_model(tmp_path / "m")
    assert saved.meta["gm_names"] == zoo.names and saved.meta["image_size"] == 32
    assert set(saved.meta["normalizer"]["lo"]) >= {"n_params", "n_layers"}
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    out = saved.model(x)
    assert out.detect.shape == (2,) and out.attribute.shape == (2, len(zoo))
    assert out.fingerprint.shape == (2, 3, 32, 32)
    # the open-set score reads the gallery of training GMs that fit_heads filled
    g = saved.readout.gallery_.numpy()
    assert g.shape == (len(zoo), saved.model.group_dims)
    assert np.allclose(np.linalg.norm(g, axis=1), 1, atol=1e-5)
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    inf = infer(saved.model, saved.readout, images)
    want = open_set_score(inf.attribution, inf.embedding, g)
    assert np.allclose(inf.open_score, want, atol=1e-6)
    assert not np.allclose(inf.open_score, 1 - inf.attribution.max(1))


def test_resume_continues_exactly(zoo: GMDataset, tmp_path: Path):
    """4 steps, then resumed to 6, equals 6 steps in one go (same seeds)."""
    first = train(zoo, tmp_path / "a", cfg(4), SMALL)
    resumed = train(zoo, tmp_path / "a", cfg(6), SMALL)
    assert resumed["resumed_from"] == 4
    assert resumed["seconds"] > first["seconds"] > 0  # training time adds up over resumes
    train(zoo, tmp_path / "b", cfg(6), SMALL)
    wa = load_file(str(tmp_path / "a" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k].float(), wb[k].float(), atol=1e-5), k
    steps = [
        json.loads(x)["step"] for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [2, 4, 6]


def test_resume_refuses_other_settings(zoo: GMDataset, tmp_path: Path):
    train(zoo, tmp_path / "m", cfg(2), SMALL)
    with pytest.raises(TrainError, match="other settings"):
        train(zoo, tmp_path / "m", cfg(4, lr=0.5), SMALL)
    # a setting of the fusion fitted after training does not bind the network
    assert train(zoo, tmp_path / "m", cfg(4, inner_families=False), SMALL)["resumed_from"] == 2


def test_train_errors(zoo: GMDataset, tmp_path: Path):
    with pytest.raises(TrainError, match="at least 2 training GMs"):
        train(zoo, tmp_path / "x", cfg(2), SMALL, train_gms=zoo.names[:1])
    with pytest.raises(FileNotFoundError, match="model.safetensors|config.json"):
        load_model(tmp_path)


def test_bank_skips_bad_files(zoo: GMDataset, tmp_path: Path):
    import shutil

    root = tmp_path / "zoo"
    shutil.copytree(zoo.root, root)
    ds = GMDataset.from_zoo(root)
    bad = ds.gms[0].images()[0]
    bad.write_bytes(b"broken")
    bank = load_bank(ds, per_gm=None)
    assert len(bank.failures) == 1 and str(bad) in bank.failures[0]
    assert len(bank.fake[0]) == len(ds.gms[0].images()) - 1
    assert len(bank.real) == len(bank.real_sources) == len(ds.real)


def test_fingerprint_loss_weights():
    fp = torch.randn(2, 3, 16, 16)
    t = fingerprint_loss(fp)
    expected = 0.1 * t["mag"] + 0.05 * t["low"] + 0.001 * t["rep"] + 1.0 * t["sym"]
    assert t["total"].item() == pytest.approx(expected.item())


def test_checkpoint_signature_reads_legacy_model_configs():
    """A checkpoint saved before `image_spectrum` existed is the same run as a config
    holding its legacy value (off), and a different run from one that turns it on."""
    from gmtrace.nets.config import red_config
    from gmtrace.train.loop import _same_run, _signature_model

    current = {"train": {"lr": 1e-3}, "model": _signature_model(red_config(5))}
    legacy = {**current, "model": {**current["model"]}}
    del legacy["model"]["image_spectrum"]
    assert _same_run(legacy, current)
    on = _signature_model(ModelConfig(n_gms=5))
    off = {**on, "image_spectrum": False}
    assert _same_run({**current, "model": off}, {**current, "model": on}) is False
    legacy_on = {k: v for k, v in on.items() if k != "image_spectrum"}
    assert not _same_run({**current, "model": legacy_on}, {**current, "model": on})
    assert _same_run({**current, "model": legacy_on}, {**current, "model": off})
    assert not _same_run({**current, "train": {"lr": 1e-4}}, current)


def test_detection_sums_two_unit_spread_experts():
    """`fit_heads` fits detection as two probes, one on all head features and one on
    the image's residual spectrum alone, each scaled to unit spread over the images
    it was fitted on; the spectrum probe alone tells noisy images from smooth ones."""
    from gmtrace.nets.model import GMTraceModel
    from gmtrace.readout.fit import fit_heads
    from gmtrace.readout.inference import head_features
    from gmtrace.readout.readout import Readout

    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = GMTraceModel(replace(SMALL, n_gms=2)).eval()
    smooth = lambda n: np.repeat(  # noqa: E731
        np.repeat(rng.integers(60, 200, (n, 8, 8, 3)), 4, axis=1), 4, axis=2
    ).astype(np.uint8)
    noisy = lambda n: np.clip(  # noqa: E731
        smooth(n) + rng.normal(0, 25, (n, 32, 32, 3)), 0, 255
    ).astype(np.uint8)
    fake, real = [noisy(40), noisy(40)], smooth(80)
    r = Readout.for_model(model)
    fit_heads(r, model, fake, real)
    r.platt_ = torch.tensor([1.0, 0.0])  # uncalibrated: the logit is the sum itself
    bins = model.cfg.spectrum_bins
    w = r.detect_spectrum_

    def features(images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(head_features(model, images))

    e = features(np.concatenate([*fake, real]))
    parts = e @ r.detect_weight_ + r.detect_bias_, e[:, -bins:] @ w[:-1]
    assert [float(p.std(correction=0)) for p in parts] == pytest.approx([1, 1], rel=1e-3)
    e = features(np.concatenate([noisy(20), smooth(20)]))
    spectrum_logit = e[:, -bins:] @ w[:-1] + w[-1]
    assert (spectrum_logit[:20] > 0).all() and (spectrum_logit[20:] < 0).all()
    x = torch.zeros(len(e), 3, 32, 32)
    total = e @ r.detect_weight_ + r.detect_bias_ + spectrum_logit
    assert torch.allclose(r(e, x).logit, total, atol=1e-5)


def test_spectrum_expert_config():
    """Off for configs saved before it existed and for RED's architecture; it needs the
    image spectrum it reads."""
    from gmtrace.nets.config import red_config
    from gmtrace.nets.model import GMTraceModel

    legacy = ModelConfig().to_dict()
    del legacy["spectrum_expert"]
    assert ModelConfig.from_dict(legacy).spectrum_expert is False
    assert "detect_spectrum" not in dict(GMTraceModel(red_config(3)).named_buffers())
    with pytest.raises(ValueError, match="spectrum_expert"):
        ModelConfig(image_spectrum=False)
    assert ModelConfig(image_spectrum=False, spectrum_expert=False).image_spectrum is False


def test_batches_balanced_by_tier_draw_each_tier_equally():
    """With `balance="tier"` a tier of 8 GMs and one of 2 each give about half of the
    generated images; with the default every GM weighs the same (the 8 give 80 %), the
    draws of every run before the option; a checkpoint saved before it existed is the
    same run as the default and not as "tier"."""
    from gmtrace.data.loader import ImageBank
    from gmtrace.train.loop import BatchSampler, _same_run, gm_weights

    rng = np.random.default_rng(0)
    bank = ImageBank(
        gm_names=[f"g{i}" for i in range(10)],
        fake=[(rng.random((2, 8, 8, 3)) * 255).astype(np.uint8) for _ in range(10)],
        real=(rng.random((4, 8, 8, 3)) * 255).astype(np.uint8),
        real_sources=["r"] * 4,
    )
    tiers = ["big"] * 8 + ["small"] * 2
    w = gm_weights(tiers, "tier")
    assert np.allclose(w, [1 / 16] * 8 + [1 / 4] * 2) and w.sum() == pytest.approx(1.0)
    assert gm_weights(tiers, "gm") is None
    with pytest.raises(TrainError, match="unknown balance"):
        gm_weights(tiers, "family")

    def share_of_small(balance: str, tiers=tiers) -> float:
        cfg = TrainConfig(batch=200, image_size=8, augment=False, cons_frac=0.0, balance=balance)
        sampler = BatchSampler(bank, cfg, np.random.default_rng(3), tiers)
        gms = np.concatenate([sampler()[1].numpy() for _ in range(10)])
        return float(np.mean(gms >= 8))

    assert 0.45 < share_of_small("tier") < 0.55
    assert 0.15 < share_of_small("gm") < 0.25
    # the default draws as a sampler that knows no tiers
    a = BatchSampler(bank, TrainConfig(batch=8, image_size=8), np.random.default_rng(5), tiers)
    b = BatchSampler(bank, TrainConfig(batch=8, image_size=8), np.random.default_rng(5))
    assert torch.equal(a()[1], b()[1])
    current = {"train": {"lr": 1e-3, "balance": "gm"}, "model": {}}
    saved = {"train": {"lr": 1e-3}, "model": {}}
    from gmtrace.nets.config import red_config
    from gmtrace.train.loop import _signature_model

    model = _signature_model(red_config(5))
    current, saved = {**current, "model": model}, {**saved, "model": model}
    assert _same_run(saved, current)
    assert not _same_run(saved, {**current, "train": {"lr": 1e-3, "balance": "tier"}})


def test_pairs_share_their_augmentation_and_views_are_degraded():
    """A generated image and its aligned real crop get the same crop window, blur and
    JPEG; only held-out-safe pairs are used; degraded views differ from the clean."""
    from gmtrace.data.loader import ImageBank
    from gmtrace.train.loop import BatchSampler

    rng = np.random.default_rng(0)
    fake = [(rng.random((5, 40, 40, 3)) * 255).astype(np.uint8) for _ in range(2)]
    bank = ImageBank(
        gm_names=["a", "b"],
        fake=fake,
        real=(rng.random((7, 40, 40, 3)) * 255).astype(np.uint8),
        real_sources=["r"] * 7,
        pairs=[fake[0].copy(), fake[1][:0]],  # GM a: each pair equals its image
        pair_origins=[[("p", "c")] * 5, []],
    )
    cfg = TrainConfig(batch=8, image_size=32, p_pair=1.0, cons_frac=0.25)
    x, gm, is_fake, degraded = BatchSampler(bank, cfg, np.random.default_rng(1))()
    assert x.shape == (8, 3, 32, 32) and degraded.shape == (2, 3, 32, 32)
    assert is_fake.tolist() == [1] * 4 + [0] * 4
    from_a = [j for j in range(4) if gm[j] == 0]
    assert from_a  # with this seed GM a is drawn
    for n, j in enumerate(from_a):  # pairs fill the real half first, in order
        assert torch.equal(x[j], x[4 + n])
    assert not torch.equal(degraded, x[:2])
    # a held-out collection: its pairs are never used
    held = bank.without_pairs_from(set(), {"c"})
    x, gm, _, _ = BatchSampler(held, cfg, np.random.default_rng(1))()
    assert not any(torch.equal(x[j], x[k]) for j in range(4) for k in range(4, 8))


def test_consistency_loss_is_zero_for_identical_views():
    from gmtrace.nets.model import ModelOutput
    from gmtrace.train.loop import consistency_loss

    def out(d, p):
        return ModelOutput(None, None, torch.tensor(d), None, torch.tensor(p), None)

    a = out([1.0, -2.0], [[1.0, 0.0], [0.0, 1.0]])
    same = consistency_loss(a, out([1.0, -2.0], [[1.0, 0.0], [0.0, 1.0]])).item()
    assert same == pytest.approx(0.0, abs=1e-6)
    # first logit 1 -> 2: KL(Bern(s(1)) || Bern(s(2))); second embedding orthogonal
    b = out([2.0, -2.0], [[1.0, 0.0], [1.0, 0.0]])
    p, q = 1 / (1 + np.exp(-1.0)), 1 / (1 + np.exp(-2.0))
    kl = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
    assert consistency_loss(a, b).item() == pytest.approx(kl / 2 + 1 / 2, rel=1e-5)
    # huge logits stay bounded: the loss of a wrong sign is at most about |logit|
    c = out([50.0, -50.0], [[1.0, 0.0], [0.0, 1.0]])
    assert consistency_loss(c, out([-50.0, 50.0], [[1.0, 0.0], [0.0, 1.0]])).item() < 60


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_on_cuda_fits_a_readout_that_answers_on_cuda(zoo: GMDataset, tmp_path: Path):
    # the readout is fitted on the CPU (scikit-learn) while the network runs on CUDA:
    # `infer` moves its tensors to the network's device (a first run on a GPU
    # machine failed here, in the calibration's first `infer`)
    train(zoo, tmp_path / "m", cfg(2), SMALL, device="cuda")
    saved = load_model(tmp_path / "m", device="cuda")
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    inf = infer(saved.model, saved.readout, images)
    assert inf.p_generated.shape == (4,) and saved.readout.detect_weight_.is_cuda
