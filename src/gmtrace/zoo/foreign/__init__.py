"""The foreign-code tier: GMs that third-party packages build and train with their
own model classes, losses, trainers and samplers. gmtrace supplies photographs, a
budget and a seed, reads the ground truth with `describe()` of the package's own
module, and records the package and its version as the GM's codebase.

`base` holds what an adapter returns and the registry; one module per package
(`diffusers_gms`, ...) registers its families; `build` plans, runs and writes the
tier in the zoo layout. See docs/tiers.md.
"""
