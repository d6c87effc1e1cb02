"""The command line: describe a user's module, build, show and export a zoo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from gmtrace.cli.main import app

runner = CliRunner()

USER_GM = """
import torch
from torch import nn

class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 32 * 4 * 4)
        self.up = nn.Sequential(
            nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.ConvTranspose2d(16, 3, 4, 2, 1),
        )

    def forward(self, z):
        return torch.tanh(self.up(self.fc(z).view(-1, 32, 4, 4)))

instance = Generator()

def broken():
    return 42
"""


def test_describe_user_file(tmp_path: Path):
    f = tmp_path / "my_gan.py"
    f.write_text(USER_GM)
    r = runner.invoke(app, ["describe", f"{f}:Generator", "--input-shape", "2,16", "--json"])
    assert r.exit_code == 0, r.output
    v = json.loads(r.output)["values"]
    assert (v["n_layers"], v["n_conv"], v["n_fc"], v["n_norm"]) == (3, 2, 1, 1)
    assert v["n_filters"] == 16 + 3
    assert v["n_params"] == (16 * 512 + 512) + (32 * 16 * 16 + 16) + 32 + (16 * 3 * 16 + 3)
    assert v["last_activation"] == "tanh"  # functional torch.tanh, seen by the trace
    assert v["upsampling"] == "learned" and v["norm_type"] == "batch"
    # the instance works too; without an input, the static walk misses torch.tanh
    r = runner.invoke(app, ["describe", f"{f}:instance", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["values"]["last_activation"] == "none"
    r = runner.invoke(app, ["describe", f"{f}:Generator"])
    assert r.exit_code == 0 and "static walk only" in r.output and "n_params" in r.output


def test_describe_errors(tmp_path: Path):
    f = tmp_path / "my_gan.py"
    f.write_text(USER_GM)
    for target, message in [
        (f"{tmp_path}/missing.py:G", "no such file"),
        (f"{f}:Nope", "has no 'Nope'"),
        (f"{f}:broken", "is not an nn.Module"),
        (str(f), "expected FILE.py:NAME"),
    ]:
        r = runner.invoke(app, ["describe", target])
        assert r.exit_code == 2, (target, r.output)
        assert message in r.output, (target, r.output)
    r = runner.invoke(app, ["describe", f"{f}:Generator", "--input-shape", "2,x"])
    assert r.exit_code == 2 and "expected integers" in r.output


def test_zoo_commands(tmp_path: Path):
    out = tmp_path / "zoo"
    r = runner.invoke(app, ["zoo", "build", "--out", str(out), "--preset", "tiny", "--limit", "2"])
    assert r.exit_code == 0, r.output
    assert "built 2, resumed 0, failed 0" in r.output
    r = runner.invoke(app, ["zoo", "show", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "contact_sheet.png").stat().st_size > 1000
    red = tmp_path / "red"
    r = runner.invoke(app, ["zoo", "export-red", str(out), "--out", str(red)])
    assert r.exit_code == 0, r.output
    arch = np.load(red / "ground_truth_net_15dim.npy", allow_pickle=False)
    assert arch.shape == (2, 15)
    lines = (red / "net_arch.txt").read_text().splitlines()
    assert [ln.split()[0] for ln in lines] == ["dcgan_000", "resgan_000"]
    assert len(lines[0].split()) == 16
    # train reads RED116-format data (text or numpy) with a folder of real photographs
    small = ["--steps", "2", "--batch", "4", "--image-size", "32", "--per-gm", "4"]
    small += ["--fen-depth", "3", "--fen-width", "8", "--real", str(out / "real")]
    for arch, loss in (("net_arch.txt", "loss.txt"), ("ground_truth_net_15dim.npy", None)):
        loss = loss or "ground_truth_loss_10dim.npy"
        args = ["train", "--out", str(tmp_path / arch), "--red-arch", str(red / arch)]
        args += ["--red-loss", str(red / loss), "--red-images", str(out / "fake"), *small]
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
        assert (tmp_path / arch / "model.safetensors").is_file()
    r = runner.invoke(app, ["train", "--out", str(tmp_path / "x"), "--red-arch", str(red / arch)])
    assert r.exit_code == 2 and "--red-loss" in r.output
    r = runner.invoke(app, ["train", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "--zoo" in r.output


def test_zoo_build_errors(tmp_path: Path):
    r = runner.invoke(app, ["zoo", "build", "--out", str(tmp_path / "z"), "--preset", "huge"])
    assert r.exit_code == 2 and "unknown preset 'huge'" in r.output
    r = runner.invoke(
        app, ["zoo", "build", "--out", str(tmp_path / "z"), "--real", str(tmp_path / "nothing")]
    )
    assert r.exit_code == 2 and "no such folder" in r.output
    r = runner.invoke(app, ["zoo", "show", str(tmp_path / "nozoo")])
    assert r.exit_code == 2 and "models.csv: missing" in r.output


def test_an_unknown_balance_is_a_one_line_error_before_any_work(tmp_path: Path):
    for cmd in (
        ["train", "--zoo", str(tmp_path), "--out", str(tmp_path / "m"), "--balance", "family"],
        ["evaluate", "--zoo", str(tmp_path), "--out", str(tmp_path / "r"), "--balance", "x"],
    ):
        r = runner.invoke(app, cmd)
        assert r.exit_code != 0
        assert "unknown --balance" in r.output and "gm, tier" in r.output
        assert not (tmp_path / "m").exists() and not (tmp_path / "r").exists()
