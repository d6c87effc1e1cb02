"""The package version (one place: `gmtrace.__version__`, zoo and model metadata)."""

__version__ = "0.1.0"
