"""The admin command line: `python -m app COMMAND` (each command reads DATABASE_URL)."""

import typer

from app.cli import accounts, data, demo, serve

cli = typer.Typer(
    help="Administration commands for the employee records API.",
    no_args_is_help=True,
    add_completion=False,
)


@cli.callback()
def main() -> None:
    """Administration commands for the employee records API (reads DATABASE_URL)."""


cli.command("create-admin")(accounts.create_admin)
cli.command("purge-expired")(accounts.purge_expired)
cli.command("seed-demo")(demo.seed_demo)
cli.command("import-csv")(data.import_csv)
cli.command("export-csv")(data.export_csv)
cli.command("check")(data.check)
cli.command("serve")(serve.serve)
