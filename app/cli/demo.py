"""`python -m app seed-demo`: realistic fake employees, written as an import writes them."""

import asyncio
import random
from collections.abc import Iterator
from datetime import date
from typing import Annotated

import typer

from app.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_UNAVAILABLE,
    CommandError,
    database,
    plural,
    progressbar,
    run,
)
from app.core.errors import ConflictError
from app.core.types import INT32_MAX
from app.employees import crud
from app.employees.csv import io as csv_io
from app.employees.history.models import SystemActor
from app.employees.models import EmployeeCreate

# Demo data: a locale's names and cities, with its country.
DEMO_LOCALES = {
    "en_US": "United States",
    "en_GB": "United Kingdom",
    "de_DE": "Germany",
    "fr_FR": "France",
    "es_ES": "Spain",
    "it_IT": "Italy",
    "nl_NL": "Netherlands",
    "pl_PL": "Poland",
    "sv_SE": "Sweden",
    "pt_BR": "Brazil",
    "ja_JP": "Japan",
    "en_IN": "India",
}


def fake_employees(count: int, *, first_emp_id: int, seed: int | None) -> Iterator[EmployeeCreate]:
    """Plausible employees from a dozen countries; the same seed gives the same people."""
    from faker import Faker  # imported here: the API never needs it

    fake = Faker(list(DEMO_LOCALES))
    fake.seed_instance(seed)
    pick = random.Random(seed)  # noqa: S311  # demo data, not a secret
    locales = list(DEMO_LOCALES)
    for emp_id in range(first_emp_id, first_emp_id + count):
        locale = pick.choice(locales)
        local = fake[locale]
        yield EmployeeCreate(
            emp_id=emp_id,
            emp_name=local.name(),
            city=local.city(),
            country=DEMO_LOCALES[locale],
            emp_dob=local.date_between_dates(date(1955, 1, 1), date(2006, 12, 31)),
        )


async def seed_demo_rows(count: int, seed: int | None) -> tuple[int, int]:
    async with database() as sessionmaker, sessionmaker() as session:
        highest = await crud.highest_emp_id(session=session)
        first = highest + 1
        if first + count - 1 > INT32_MAX:
            raise CommandError(
                f"emp_ids past {highest} do not leave room for {count}", EXIT_BAD_INPUT
            )
        rows = fake_employees(count, first_emp_id=first, seed=seed)
        with progressbar(count, "Creating employees") as bar:
            try:
                await crud.insert_all(
                    session=session,
                    batches=csv_io.batched(rows),
                    actor=SystemActor("cli:seed-demo"),
                    progress=bar.update,
                )
            except ConflictError:
                raise CommandError(
                    "another writer took some of these emp_ids meanwhile; nothing was written, "
                    "run it again",
                    EXIT_UNAVAILABLE,
                ) from None
    return first, first + count - 1


def seed_demo(
    count: Annotated[
        int, typer.Argument(metavar="COUNT", min=1, max=10_000_000, help="How many employees.")
    ],
    seed: Annotated[
        int | None, typer.Option(help="Random seed: the same seed gives the same employees.")
    ] = None,
) -> None:
    """Add COUNT realistic fake employees, numbered after the highest emp_id."""

    def job() -> None:
        first, last = asyncio.run(seed_demo_rows(count, seed))
        numbers = f"{first}" if first == last else f"{first} to {last}"
        typer.echo(f"Created {plural(count, 'demo employee')} (emp_id {numbers}).")

    run(job)
