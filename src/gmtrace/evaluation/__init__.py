"""The protocol (folds held out by codebase, family or GM), scoring and the report."""
