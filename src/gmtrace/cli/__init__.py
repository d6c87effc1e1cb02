"""The `gmtrace` command line (Typer): thin commands that parse, call the API and print."""
