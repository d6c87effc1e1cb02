"""Inference engines (`gmtrace.engine`): the scan's forward pass exported to ONNX and
run by ONNX Runtime or OpenVINO answers as torch does, to 1e-4 in float32; the
exported graph is cached under the model's digest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gmtrace.core.precision import bf16_supported
from gmtrace.engine.runtimes import EngineError, installed
from gmtrace.product.analyze import Analyzer
from gmtrace.product.rows import model_fields

EXPORTING = [k for k in ("onnxruntime", "openvino") if installed(k)]


def _images(n: int, size: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    imgs = [(rng.random((size, size, 3)) * 255).astype(np.uint8) for _ in range(n)]
    imgs[0][:, : size // 2] = 255  # a saturated half: the pixel statistics' ends
    return imgs


def _close(a: np.ndarray, b: np.ndarray, tol: float = 1e-4) -> bool:
    """Equal to `tol`, relative for values above 1 (raw counts such as n_params)."""
    return bool(np.all(np.abs(a - b) <= tol * np.maximum(1.0, np.abs(a))))


def _numbers(row: dict, probe: bool = True) -> np.ndarray:
    """Every number of a row that comes from the pixels."""
    hp = row["hyperparameters"]
    vals = [row["p_generated"], row["open_set_score"], *row["embedding"]]
    vals += [g["probability"] for g in row["top_gms"]]
    vals += [v for v in hp.values() if isinstance(v, float)]
    vals += list(row["loss_probabilities"].values()) + list(row["continuous_spread"].values())
    vals += (row["parse_linear"] or []) if probe else []
    return np.array(vals, dtype=np.float64)


@pytest.mark.skipif(not EXPORTING, reason="neither ONNX Runtime nor OpenVINO is installed")
@pytest.mark.parametrize("kind", EXPORTING)
def test_an_exported_runtime_answers_as_torch(
    kind: str, small_model_dir: Path, tmp_path: Path, monkeypatch
):
    monkeypatch.setenv("GMTRACE_CACHE", str(tmp_path / "cache"))
    imgs = _images(5, 70)  # several crops each, one padded size apart
    imgs.append(_images(1, 20)[0])
    names = [f"{i}.png" for i in range(len(imgs))]
    ref = Analyzer(small_model_dir, runtime="torch")
    fast = Analyzer(small_model_dir, runtime=kind)
    assert type(fast.runtime_).__name__ != "Runtime"
    for a, b in zip(ref.analyze_arrays(imgs, names), fast.analyze_arrays(imgs, names), strict=True):
        ra, rb = a.to_row(model_fields(ref)), b.to_row(model_fields(fast))
        assert (
            ra["verdict"] == rb["verdict"]
            and ra["hyperparameters"].keys() == rb["hyperparameters"].keys()
        )
        assert _close(_numbers(ra, probe=False), _numbers(rb, probe=False))
        # the probe's raw logits: this 4-step model's probe weighs statistics whose
        # float32 rounding differs between the engines by 1e-5 of their spread heavily
        assert _close(np.array(ra["parse_linear"]), np.array(rb["parse_linear"]), 1e-3)
    # crops of another size (the unsure band's 0.75 resize) run in torch, not refused
    from gmtrace.data.images import to_float

    x = to_float(np.stack([im[:48, :48] for im in imgs[:3]]))
    got, want = fast.runtime_.run(x), ref.runtime_.run(x)
    assert all(_close(got[k], v) for k, v in want.items())
    # p(generated) alone: the engine's own at its size, torch's detection path at another
    s = ref.image_size_
    full = to_float(np.stack([im[:s, :s] for im in imgs[:3]]))
    assert fast.runtime_.built_for(full) and not fast.runtime_.built_for(x)
    for batch in (full, x):
        assert _close(fast.runtime_.detect(batch), ref.runtime_.run(batch)["p_generated"])
    # the graph is built once, under the model's digest and input size
    graphs = list((tmp_path / "cache" / "graphs").glob("*.onnx"))
    assert len(graphs) == 1 and f"-{ref.image_size_}px-" in graphs[0].name
    built = graphs[0].stat().st_mtime_ns
    Analyzer(small_model_dir, runtime=kind)
    assert graphs[0].stat().st_mtime_ns == built


@pytest.mark.skipif("openvino" not in EXPORTING, reason="OpenVINO is not installed")
def test_the_shipped_model_in_openvino_answers_as_torch(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("GMTRACE_CACHE", str(tmp_path / "cache"))
    imgs, names = _images(3, 140), ["a.png", "b.png", "c.png"]
    ref = Analyzer(runtime="torch")
    fast = Analyzer(runtime="openvino")
    for a, b in zip(ref.analyze_arrays(imgs, names), fast.analyze_arrays(imgs, names), strict=True):
        ra, rb = a.to_row(model_fields(ref)), b.to_row(model_fields(fast))
        assert _close(_numbers(ra), _numbers(rb))


def test_an_unknown_or_missing_runtime_is_a_clear_error(small_model_dir: Path):
    with pytest.raises(EngineError, match="unknown runtime 'tensorrt'"):
        Analyzer(small_model_dir, runtime="tensorrt")
    assert type(Analyzer(small_model_dir, runtime="torch").runtime_).__name__ == "Runtime"


def test_the_compiled_runtime_answers_as_torch(small_model_dir: Path):
    """`--runtime compile` (torch.compile) gives torch's rows to 1e-4; a batch
    smaller than the one it compiled for is padded and answers for its own rows (under
    half of it, or of another size, it runs in torch eager)."""
    from gmtrace.data.images import to_float

    imgs = _images(5, 70)
    names = [f"{i}.png" for i in range(len(imgs))]
    ref = Analyzer(small_model_dir, runtime="torch")
    fast = Analyzer(small_model_dir, runtime="compile")
    assert type(fast.runtime_).__name__ == "CompiledRuntime"
    for a, b in zip(ref.analyze_arrays(imgs, names), fast.analyze_arrays(imgs, names), strict=True):
        ra, rb = a.to_row(model_fields(ref)), b.to_row(model_fields(fast))
        assert ra["verdict"] == rb["verdict"]
        assert _close(_numbers(ra, probe=False), _numbers(rb, probe=False))
    compiled_for = fast.runtime_.batch  # the analysis's crops, in one batch
    x = to_float(np.stack([im[:32, :32] for im in imgs] * compiled_for))
    for n in (compiled_for - 1, 1):  # padded, then in eager
        small, want = fast.runtime_.run(x[:n]), ref.runtime_.run(x[:n])
        assert fast.runtime_.batch == compiled_for > 2
        for k, v in want.items():
            assert small[k].shape == v.shape and _close(small[k], v), k
    # another input size runs in torch eager rather than compiling again
    other, want = fast.runtime_.run(x[:2, :, :24, :24]), ref.runtime_.run(x[:2, :, :24, :24])
    assert fast.runtime_.size == ref.image_size_
    assert all(_close(other[k], v) for k, v in want.items())


def test_a_precision_this_machine_cannot_run_is_a_clear_error(small_model_dir: Path, monkeypatch):
    import gmtrace.core.precision as precision

    with pytest.raises(EngineError, match="unknown precision 'fp8'"):
        Analyzer(small_model_dir, precision="fp8")
    monkeypatch.setattr(precision, "bf16_supported", lambda: False)
    with pytest.raises(EngineError, match="no bfloat16 instructions"):
        Analyzer(small_model_dir, precision="bf16")


@pytest.mark.skipif(not bf16_supported(), reason="this CPU has no bfloat16 instructions")
def test_bfloat16_answers_near_float32_under_its_own_name(small_model_dir: Path):
    """`precision="bf16"` (torch autocast) gives rows within bfloat16's rounding of
    fp32's, named as another model (a scan never mixes them); ONNX Runtime refuses it."""
    imgs = _images(4, 70)
    names = [f"{i}.png" for i in range(len(imgs))]
    ref = Analyzer(small_model_dir)
    if installed("onnxruntime"):
        with pytest.raises(EngineError, match="fp32 only"):
            Analyzer(small_model_dir, runtime="onnxruntime", precision="bf16")
    half = Analyzer(small_model_dir, precision="bf16")
    assert half.model_id_ == ref.model_id_ + "+bf16"
    assert half.weights_sha256_ != ref.weights_sha256_
    got = half.analyze_arrays(imgs, names)
    want = ref.analyze_arrays(imgs, names)
    for a, b in zip(want, got, strict=True):
        assert abs(a.p_generated - b.p_generated) < 0.05
        assert np.allclose(a.embedding, b.embedding, atol=0.1)
    # it does run in bfloat16: not the fp32 answers exactly
    assert max(abs(a.p_generated - b.p_generated) for a, b in zip(want, got, strict=True)) > 0
    from gmtrace.data.images import to_float

    x = to_float(np.stack([im[:48, :48] for im in imgs]))  # another size: torch eager, bf16
    assert np.allclose(half.runtime_.detect(x), ref.runtime_.detect(x), atol=0.05)
