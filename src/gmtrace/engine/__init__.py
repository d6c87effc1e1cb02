"""Inference engines for the CPU: the scan's forward pass (network and readout)
exported to ONNX and run by OpenVINO or ONNX Runtime, with torch as the fallback
(docs/benchmarks.md, "Inference engines")."""

from gmtrace.engine.runtimes import RUNTIMES, Runtime, make_runtime

__all__ = ["RUNTIMES", "Runtime", "make_runtime"]
