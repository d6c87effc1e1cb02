"""Runtimes that answer a `ScanGraph`'s outputs for a batch of images:

* `torch`: the graph itself, eager (the reference, and the fallback);
* `compile`: the graph compiled by `torch.compile` (inductor);
* `onnxruntime`: the exported graph in ONNX Runtime's CPU provider;
* `openvino`: the exported graph compiled by OpenVINO for the CPU, in float32
  (OpenVINO would otherwise pick bfloat16 where the CPU has it, whose answers
  differ from torch's by far more than 1e-4).

Each runs in float32 unless asked for bfloat16 (`core.precision`, `--precision
bf16`: torch's autocast in torch and compile, OpenVINO's precision hint; ONNX Runtime
has no such path here), judged by the protocol's figures, not by equality.

The exported graph is built on first use and kept in the user's cache folder
($GMTRACE_CACHE, else $XDG_CACHE_HOME/gmtrace, else ~/.cache/gmtrace) under the
model's digest, the input size and its outputs' names, so another model (or a refit
readout, or a graph of another version's outputs) is never read. `auto` is torch:
on the 2 cores measured (docs/benchmarks.md, "Scan throughput") torch.compile was
about 10 % faster at 128 px (88 against 79 images/s) but costs a compilation of
about a minute per process, paid back after some 40,000 images; ONNX Runtime and
OpenVINO were slower than torch (58 and 71). `--runtime` picks one for a case where
it pays.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import torch

from gmtrace.core.files import cache_dir
from gmtrace.core.precision import (
    InPrecision,
    PrecisionError,
    check_precision,
    precision_scope,
)
from gmtrace.engine.graph import ScanGraph, export_onnx
from gmtrace.readout.inference import detection_p

RUNTIMES = ("auto", "torch", "compile", "onnxruntime", "openvino")


class EngineError(ValueError):
    """A runtime that cannot run here (not installed, or its graph failed to build)."""


def installed(name: str) -> bool:
    """Whether runtime `name` can run here (an exporting one needs onnxscript too)."""
    needs = ["torch"] if name in ("torch", "compile") else [name, "onnxscript"]
    return all(importlib.util.find_spec(m) is not None for m in needs)


class Runtime:
    """Answers `names` [B, ...] for float32 images [B, 3, H, W] in [-1, 1]. The
    exporting and compiled engines are built for one input size (`size`); images of
    another (a fused model's unsure band re-reads a crop resized by 0.75) go through
    the graph in torch eager instead (`eager`)."""

    name = "torch"
    torch_threads = True  # runs in torch's own thread pool (the exporters have theirs)
    size: int | None = None  # the one input side the engine was built for; None: any

    def __init__(self, graph: ScanGraph, threads: int | None = None, precision: str = "fp32"):
        self.graph = graph
        self.precision = precision
        # the graph in torch eager, in the engine's precision (`core.precision`)
        self.in_torch = graph if precision == "fp32" else InPrecision(graph, precision)
        self.module = self.in_torch  # what `run` calls
        self.names = list(graph.names)
        self.threads = threads
        if threads and self.torch_threads:  # torch's own pool, for this process
            torch.set_num_threads(threads)

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return self._torch(self.module, x)

    def detect(self, x: np.ndarray) -> np.ndarray:
        """p(generated) [B] alone: the engine's where it is built for x, else torch
        eager on the detection path only (`inference.detection_p`: the other heads are
        not computed, so in torch it is the cheaper way to the same value)."""
        if self.built_for(x):
            return self.run(x)["p_generated"]
        dev = next(self.graph.parameters()).device
        with torch.no_grad(), precision_scope(self.precision, dev.type):
            p = detection_p(self.graph.model, self.graph.readout, torch.from_numpy(x).to(dev))
        return p.float().cpu().numpy()

    def built_for(self, x: np.ndarray) -> bool:
        """Whether `run` answers images x in an engine of its own (not torch eager):
        an engine built for one size, and x of that size."""
        return self.size is not None and not self.other_size(x)

    def eager(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The graph in torch eager, whatever the engine (in its precision)."""
        return self._torch(self.in_torch, x)

    def other_size(self, x: np.ndarray) -> bool:
        """Whether images x are of another size than the engine was built for."""
        return self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size)

    @torch.no_grad()
    def _torch(self, module, x: np.ndarray) -> dict[str, np.ndarray]:
        dev = next(self.graph.parameters()).device
        out = module(torch.from_numpy(x).to(dev))
        return {n: v.float().cpu().numpy() for n, v in zip(self.names, out, strict=True)}


class CompiledRuntime(Runtime):
    """The graph compiled by `torch.compile` (inductor: fused kernels in C++ for the
    CPU). Compiled on the first batch, for that batch size: smaller batches (a
    scan's last) are padded to it, so one compiled graph serves the whole scan; a
    larger one compiles again; one under half its size (a fused model's re-encoded
    crops of the few images in its unsure band) runs in torch eager rather than pay
    for the padding. The compilation costs seconds to a minute once per process
    (inductor keeps its kernels in its own cache between processes)."""

    name = "compile"

    def __init__(self, graph: ScanGraph, threads: int | None = None, precision: str = "fp32"):
        super().__init__(graph, threads, precision)
        self.module = torch.compile(self.in_torch, dynamic=False)
        self.batch = 0

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if self.size is None:  # compiled for the first batch's size (recompiling costs)
            self.size = int(x.shape[-1])
        n = len(x)
        if not self.built_for(x):
            return self.eager(x)
        self.batch = max(self.batch, n)
        if n < self.batch:
            x = np.concatenate([x, np.zeros((self.batch - n, *x.shape[1:]), x.dtype)])
        return {m: v[:n] for m, v in super().run(x).items()}

    def built_for(self, x: np.ndarray) -> bool:
        return super().built_for(x) and len(x) * 2 >= self.batch


class ExportedRuntime(Runtime):
    """An engine of its own on the exported ONNX graph, built for one input size;
    images of another size go through torch eager (`eager`)."""

    torch_threads = False

    def __init__(
        self,
        graph: ScanGraph,
        onnx_path: Path,
        size: int,
        threads: int | None = None,
        precision: str = "fp32",
    ):
        super().__init__(graph, threads, precision)
        self.size = size  # the exported graph's input side
        self._open(onnx_path, threads or torch.get_num_threads())

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if not self.built_for(x):
            return self.eager(x)
        return self._run(np.ascontiguousarray(x, dtype=np.float32))

    def _open(self, onnx_path: Path, threads: int) -> None:
        raise NotImplementedError

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError


class OnnxRuntime(ExportedRuntime):
    name = "onnxruntime"

    def _open(self, onnx_path: Path, threads: int) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(onnx_path), opts, providers=["CPUExecutionProvider"]
        )

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.names, self.session.run(self.names, {"x": x}), strict=True))


class OpenVinoRuntime(ExportedRuntime):
    name = "openvino"

    def _open(self, onnx_path: Path, threads: int) -> None:
        import openvino as ov

        config = {
            "INFERENCE_PRECISION_HINT": "f32" if self.precision == "fp32" else "bf16",
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
        }
        self.compiled = ov.Core().compile_model(str(onnx_path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.outputs = [self.compiled.output(n) for n in self.names]

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        res = self.request.infer({0: x})
        return {n: np.asarray(res[o]) for n, o in zip(self.names, self.outputs, strict=True)}


def make_runtime(
    kind: str,
    model,
    readout,
    digest: str,
    image_size: int,
    threads: int | None = None,
    console=None,
    precision: str = "fp32",
) -> Runtime:
    """The runtime `kind` (`RUNTIMES`) for a network and its readout, named by the
    model's `digest` (`readout.saved.model_digest`), in `precision`
    (`core.precision`). `auto` is torch (the module doc says why); asking for one
    that is not installed, for an exporting one on CUDA, or for a precision it or this
    machine cannot run, is an `EngineError`."""
    if kind not in RUNTIMES:
        raise EngineError(f"unknown runtime {kind!r}; choose one of {', '.join(RUNTIMES)}")
    graph = ScanGraph(model, readout)
    device = next(graph.parameters()).device.type
    on_cpu = device == "cpu"
    try:
        check_precision(precision, device)
    except PrecisionError as e:
        raise EngineError(str(e)) from None
    if kind == "onnxruntime" and precision != "fp32":
        raise EngineError(f"the onnxruntime runtime runs in fp32 only, not {precision}")
    if kind in ("auto", "torch"):
        return Runtime(graph, threads, precision)
    if kind == "compile":
        return CompiledRuntime(graph, threads, precision)
    if not on_cpu:
        raise EngineError(f"the {kind} runtime runs on the CPU; the model is on CUDA")
    if not installed(kind):
        raise EngineError(f"the {kind} runtime is not installed (pip install {kind} onnxscript)")
    # the outputs are in the name: a graph exported before an output was added is not read
    outputs = hashlib.sha256(" ".join(graph.names).encode()).hexdigest()[:8]
    path = cache_dir() / "graphs" / f"{digest[:24]}-{image_size}px-{outputs}.onnx"
    if not path.is_file():
        if console is not None:
            console.print(f"building the {kind} graph of the model (once): {path}")
        try:
            export_onnx(graph, path, image_size)
        except Exception as e:  # any exporter failure, said in one line
            raise EngineError(f"exporting the model to ONNX failed ({e})") from None
    cls = OpenVinoRuntime if kind == "openvino" else OnnxRuntime
    return cls(graph, path, image_size, threads, precision)
