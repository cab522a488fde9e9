"""Databases for one run: create, fill with the same N generated rows by COPY, drop."""

import random
import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlsplit

import asyncpg

FIRST_NAMES = (
    "Ada",
    "Alan",
    "Amara",
    "Ana",
    "Anders",
    "Aiko",
    "Bruno",
    "Carmen",
    "Chen",
    "Chloe",
    "David",
    "Diego",
    "Elena",
    "Emma",
    "Farah",
    "Felix",
    "Grace",
    "Hana",
    "Hugo",
    "Ines",
    "Ivan",
    "Jamal",
    "Jonas",
    "Julia",
    "Karim",
    "Kenji",
    "Lara",
    "Leila",
    "Liam",
    "Lucia",
    "Maria",
    "Mateo",
    "Mei",
    "Mohamed",
    "Nadia",
    "Noah",
    "Olga",
    "Omar",
    "Priya",
    "Rafael",
    "Rosa",
    "Sara",
    "Sofia",
    "Tariq",
    "Tomas",
    "Yara",
    "Yusuf",
    "Zoe",
)
LAST_NAMES = (
    "Abe",
    "Ahmed",
    "Almeida",
    "Becker",
    "Chen",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Gonzalez",
    "Haddad",
    "Hansen",
    "Ibrahim",
    "Ivanova",
    "Jensen",
    "Kim",
    "Kowalski",
    "Lee",
    "Lopez",
    "Martin",
    "Moreau",
    "Muller",
    "Nakamura",
    "Nguyen",
    "Novak",
    "Okafor",
    "Olsen",
    "Park",
    "Patel",
    "Perez",
    "Rossi",
    "Santos",
    "Schmidt",
    "Silva",
    "Singh",
    "Smith",
    "Suzuki",
    "Tanaka",
    "Weber",
    "Wilson",
    "Yilmaz",
    "Zhang",
)
CITIES = (
    ("London", "United Kingdom"),
    ("Manchester", "United Kingdom"),
    ("Paris", "France"),
    ("Lyon", "France"),
    ("Berlin", "Germany"),
    ("Hamburg", "Germany"),
    ("Madrid", "Spain"),
    ("Barcelona", "Spain"),
    ("Lisbon", "Portugal"),
    ("Rome", "Italy"),
    ("Milan", "Italy"),
    ("Amsterdam", "Netherlands"),
    ("Warsaw", "Poland"),
    ("Stockholm", "Sweden"),
    ("Oslo", "Norway"),
    ("Dublin", "Ireland"),
    ("New York", "United States"),
    ("San Francisco", "United States"),
    ("Chicago", "United States"),
    ("Toronto", "Canada"),
    ("Mexico City", "Mexico"),
    ("Sao Paulo", "Brazil"),
    ("Buenos Aires", "Argentina"),
    ("Lagos", "Nigeria"),
    ("Nairobi", "Kenya"),
    ("Cairo", "Egypt"),
    ("Mumbai", "India"),
    ("Bangalore", "India"),
    ("Singapore", "Singapore"),
    ("Tokyo", "Japan"),
    ("Osaka", "Japan"),
    ("Seoul", "South Korea"),
    ("Shanghai", "China"),
    ("Sydney", "Australia"),
    ("Melbourne", "Australia"),
    ("Auckland", "New Zealand"),
)
# Substrings a user might type in the city filter (each matches one or a few cities).
CITY_TERMS = ("lon", "par", "ber", "mad", "york", "tok", "syd", "ai", "an", "os")
SEED_COLUMNS = ["id", "emp_id", "emp_name", "city", "country", "emp_dob"]
OURS_COLUMNS = [*SEED_COLUMNS, "created_at", "updated_at"]
EPOCH = date(1955, 1, 1)


def generate_rows(n: int, seed: int = 20261123) -> Iterator[tuple[object, ...]]:
    """N deterministic employees, emp_ids 1..N in a shuffled order (heap order != id order)."""
    rng = random.Random(seed)  # noqa: S311  # reproducible data, not secrets
    emp_ids = list(range(1, n + 1))
    rng.shuffle(emp_ids)
    for emp_id in emp_ids:
        city, country = CITIES[rng.randrange(len(CITIES))]
        yield (
            uuid.UUID(int=rng.getrandbits(128), version=4),
            emp_id,
            f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
            city,
            country,
            EPOCH + timedelta(days=rng.randrange(45 * 365)),
        )


def unique_name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


async def create_database(dsn: str, name: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def drop_database(dsn: str, name: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def copy_rows(dsn: str, n: int, *, with_timestamps: bool) -> None:
    """COPY the generated rows into `employee`, then VACUUM ANALYZE, as autovacuum would soon
    after a bulk load (statistics, and the visibility map index-only scans rely on)."""
    now = datetime.now(UTC)
    columns = OURS_COLUMNS if with_timestamps else SEED_COLUMNS
    rows = generate_rows(n)
    records = ((*row, now, now) for row in rows) if with_timestamps else rows
    connection = await asyncpg.connect(dsn)
    try:
        await connection.copy_records_to_table("employee", records=records, columns=columns)
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()


def database_dsn(dsn: str, name: str) -> str:
    """The same server and credentials, another database name."""
    return urlsplit(dsn)._replace(path=f"/{name}").geturl()
