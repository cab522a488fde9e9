"""The admin command line: `python -m app COMMAND` (each command reads DATABASE_URL)."""

from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

from app.cli import accounts, data, demo, serve


def _flags_show_no_type(command: TyperCommand | TyperGroup, ctx: Any) -> None:
    # typer's help shows every option's type, a flag's too: `--help <bool>` reads as if the
    # flag took a value. An empty metavar leaves a flag's type column blank.
    for param in command.get_params(ctx):
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""


class Command(TyperCommand):
    def format_help(self, ctx: Any, formatter: Any) -> None:
        _flags_show_no_type(self, ctx)
        super().format_help(ctx, formatter)


class Group(TyperGroup):
    def format_help(self, ctx: Any, formatter: Any) -> None:
        _flags_show_no_type(self, ctx)
        super().format_help(ctx, formatter)


cli = typer.Typer(
    cls=Group,
    help="Administration commands for the employee records API.",
    no_args_is_help=True,
    add_completion=False,
)


@cli.callback()
def main() -> None:
    """Administration commands for the employee records API (reads DATABASE_URL)."""


cli.command("create-admin", cls=Command)(accounts.create_admin)
cli.command("set-role", cls=Command)(accounts.set_role)
cli.command("purge-expired", cls=Command)(accounts.purge_expired)
cli.command("seed-demo", cls=Command)(demo.seed_demo)
cli.command("import-csv", cls=Command)(data.import_csv)
cli.command("export-csv", cls=Command)(data.export_csv)
cli.command("check", cls=Command)(data.check)
cli.command("serve", cls=Command)(serve.serve)
