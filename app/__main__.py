"""`python -m app`: the admin command line (app/cli/)."""

from app.cli import cli

cli(prog_name="python -m app")
