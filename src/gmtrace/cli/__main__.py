"""`python -m gmtrace.cli`: the `gmtrace` command."""

from gmtrace.cli.main import app

app()
