"""`python -m app`: the admin command line (see app/cli.py)."""

from app.cli import cli

cli(prog_name="python -m app")
