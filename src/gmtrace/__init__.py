"""gmtrace: reverse-engineer generative models from the images they make."""

from gmtrace.introspect import Architecture, describe

__all__ = ["Architecture", "describe", "__version__"]
__version__ = "0.1.0"
