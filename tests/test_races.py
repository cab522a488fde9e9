"""Racing requests get exactly the answers a one-request-at-a-time server would give.

Each test fires 20-24 requests at once on real PostgreSQL (private database, real commits) and
checks the multiset of statuses, that none is a 5xx, and what the database holds afterwards.
Pure duplicate creates and pure emp_id moves already race in tests/test_employees_write.py
(TestRaces), and refresh-token reuse in tests/test_token_lifecycle.py; they are not repeated here.
"""

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from app.accounts import crud as users_crud
from app.accounts.models import User
from app.employees.models import Employee
from tests.conftest import employee_payload

pytestmark = pytest.mark.postgres_only

Sessionmaker = async_sessionmaker[AsyncSession]
FIELDS = ("emp_name", "city", "country", "emp_dob")


def statuses(responses: list[Response]) -> Counter[int]:
    counts = Counter(r.status_code for r in responses)
    assert not [code for code in counts if code >= 500], counts
    return counts


async def rows_between(sessionmaker: Sessionmaker, low: int, high: int) -> list[dict[str, Any]]:
    """The records whose emp_id is in [low, high], read with a fresh session."""
    async with sessionmaker() as session:
        emp_id = col(Employee.emp_id)
        statement = select(Employee).where(emp_id.between(low, high)).order_by(emp_id)
        rows = (await session.execute(statement)).scalars()
        return [row.model_dump(mode="json", include={"emp_id", *FIELDS}) for row in rows]


class RegistrationGate:
    """Holds each sign-up, once its password is hashed, until all `n` are ready to insert.

    Hashing runs one at a time, so without it the sign-ups would reach the database one by one
    and never race.
    """

    def __init__(self, n: int) -> None:
        self.expected, self.arrived, self.ready = n, 0, asyncio.Event()

    def wrap(self, create: Callable[..., Any]) -> Callable[..., Any]:
        async def held(**kwargs: Any) -> Any:
            self.arrived += 1
            if self.arrived >= self.expected:
                self.ready.set()
            await asyncio.wait_for(self.ready.wait(), timeout=20)
            return await create(**kwargs)

        return held


def same_spelling(_: int) -> str:
    return "race.user"


def case_variant(i: int) -> str:
    """A different capitalisation of race.user for each i: the bits of i pick upper-case letters."""
    return "".join(c.upper() if i >> n & 1 else c for n, c in enumerate("race.user"))


class TestDuplicateRegistrations:
    @pytest.mark.parametrize(
        "spell", [same_spelling, case_variant], ids=["same-spelling", "case-variants"]
    )
    async def test_one_sign_up_wins_the_rest_get_409(
        self,
        client: AsyncClient,
        sessionmaker: Sessionmaker,
        monkeypatch: pytest.MonkeyPatch,
        spell: Callable[[int], str],
    ) -> None:
        n = 20
        monkeypatch.setattr(
            users_crud, "create_user", RegistrationGate(n).wrap(users_crud.create_user)
        )
        bodies = [{"username": spell(i), "password": f"racing-password-{i}"} for i in range(n)]

        responses = await asyncio.gather(
            *(client.post("/auth/register", json=body) for body in bodies)
        )

        assert statuses(responses) == {201: 1, 409: n - 1}
        for response in responses:
            if response.status_code == 409:
                assert response.json() == {"detail": "Username is already taken"}
        winner = next(i for i, r in enumerate(responses) if r.status_code == 201)
        async with sessionmaker() as session:
            users = (await session.execute(select(User))).scalars().all()
        assert [u.username for u in users] == [bodies[winner]["username"]]
        # The account that exists is the winner's: its password signs in, a loser's does not.
        loser = (winner + 1) % n
        for i, expected in ((winner, 200), (loser, 401)):
            form = {"username": "RACE.user", "password": bodies[i]["password"]}
            assert (await client.post("/auth/token", data=form)).status_code == expected


class TestDeleteRacingUpdate:
    async def test_one_delete_wins_and_no_update_outlives_it(
        self,
        admin_user_client: AsyncClient,
        make_employees: Callable[..., Any],
        sessionmaker: Sessionmaker,
    ) -> None:
        for round_ in range(5):
            emp_id = 100 + round_
            await make_employees(employee_payload(emp_id=emp_id))
            path = f"/employees/{emp_id}"
            requests = []
            for i in range(12):
                requests.append(admin_user_client.delete(path))
                requests.append(admin_user_client.patch(path, json={"city": f"City {i}"}))

            responses = await asyncio.gather(*requests)

            deletes, patches = responses[0::2], responses[1::2]
            assert statuses(deletes) == {204: 1, 404: 11}, round_
            assert set(statuses(patches)) <= {200, 404}, round_
            for i, response in enumerate(patches):
                if response.status_code == 200:
                    assert response.json()["city"] == f"City {i}"
            for response in [*deletes, *patches]:
                if response.status_code == 404:
                    assert response.json() == {"detail": f"Employee {emp_id} not found"}
            assert await rows_between(sessionmaker, emp_id, emp_id) == [], round_
            assert (await admin_user_client.get(path)).status_code == 404

    async def test_a_delete_never_removes_the_record_a_move_took_away(
        self,
        admin_user_client: AsyncClient,
        make_employees: Callable[..., Any],
        sessionmaker: Sessionmaker,
    ) -> None:
        # Serially, DELETE /employees/7 after a move of 7 to 8 is a 404 and employee 8 stays;
        # a delete that read the row before the move must not delete it from under its new key.
        for round_ in range(10):
            old, new = 10 * round_ + 1, 10 * round_ + 2
            await make_employees(employee_payload(emp_id=old))
            requests = []
            for _ in range(10):
                requests.append(admin_user_client.delete(f"/employees/{old}"))
                requests.append(admin_user_client.patch(f"/employees/{old}", json={"emp_id": new}))

            responses = await asyncio.gather(*requests)

            deletes, moves = statuses(responses[0::2]), statuses(responses[1::2])
            remaining = await rows_between(sessionmaker, old, new)
            if deletes[204]:
                assert (deletes, moves) == ({204: 1, 404: 9}, {404: 10}), round_
                assert remaining == [], round_
            else:
                assert (deletes, moves) == ({404: 10}, {200: 1, 404: 9}), round_
                assert [row["emp_id"] for row in remaining] == [new], round_


class TestConcurrentPartialUpdates:
    async def test_every_patch_succeeds_and_the_row_holds_values_sent(
        self,
        admin_user_client: AsyncClient,
        make_employees: Callable[..., Any],
        sessionmaker: Sessionmaker,
    ) -> None:
        await make_employees(employee_payload(emp_id=7))
        sent: dict[str, list[Any]] = {field: [] for field in FIELDS}
        bodies = []
        for i in range(24):
            field = FIELDS[i % len(FIELDS)]
            value = f"{1950 + i}-01-0{1 + i % 9}" if field == "emp_dob" else f"{field} {i}"
            sent[field].append(value)
            bodies.append({field: value})

        responses = await asyncio.gather(
            *(admin_user_client.patch("/employees/7", json=body) for body in bodies)
        )

        assert statuses(responses) == {200: 24}
        (row,) = await rows_between(sessionmaker, 1, 2**31 - 1)
        assert row["emp_id"] == 7
        for field in FIELDS:
            assert row[field] in sent[field], field
        # Replayed one at a time in the order they were applied, every answer shows the record
        # as it stood right after that change: no answer shows another field's stale value.
        state = {field: employee_payload(emp_id=7)[field] for field in FIELDS}
        applied = sorted(
            zip(responses, bodies, strict=True),
            key=lambda pair: datetime.fromisoformat(pair[0].json()["updated_at"]),
        )
        for response, body in applied:
            state |= body
            assert {field: response.json()[field] for field in FIELDS} == state, body
        assert {field: row[field] for field in FIELDS} == state


class TestCreateRacingMove:
    async def test_exactly_one_request_takes_the_emp_id(
        self,
        admin_user_client: AsyncClient,
        make_employees: Callable[..., Any],
        sessionmaker: Sessionmaker,
    ) -> None:
        for round_ in range(3):
            base, target = 100 * round_ + 1, 100 * round_ + 99
            movers = list(range(base, base + 12))
            await make_employees(*(employee_payload(emp_id=e, emp_name=f"M{e}") for e in movers))
            requests = []
            for i, mover in enumerate(movers):
                name = f"P{round_}.{i}"
                requests.append(
                    admin_user_client.post(
                        "/employees/", json=employee_payload(target, emp_name=name)
                    )
                )
                if i % 2:
                    body = employee_payload(target, emp_name=f"M{mover}")
                    requests.append(admin_user_client.put(f"/employees/{mover}", json=body))
                else:
                    requests.append(
                        admin_user_client.patch(f"/employees/{mover}", json={"emp_id": target})
                    )

            responses = await asyncio.gather(*requests)

            codes = statuses(responses)
            assert codes[409] == len(responses) - 1, (round_, codes)
            (winner,) = [r for r in responses if r.status_code in (200, 201)]
            for response in responses:
                if response.status_code == 409:
                    assert response.json() == {
                        "detail": f"An employee with emp_id {target} already exists"
                    }
            rows = await rows_between(sessionmaker, base, target)
            assert [r["emp_name"] for r in rows if r["emp_id"] == target] == [
                winner.json()["emp_name"]
            ]
            others = [r["emp_id"] for r in rows if r["emp_id"] != target]
            if winner.status_code == 201:
                assert others == movers, round_
            else:
                moved = int(winner.json()["emp_name"][1:])
                assert others == [m for m in movers if m != moved], round_


def import_body(emp_ids: range, name: str) -> dict[str, Any]:
    lines = ["emp_id,emp_name,city,country,emp_dob"]
    lines += [f"{e},{name} {e},Leeds,United Kingdom,1990-01-01" for e in emp_ids]
    return {"files": {"file": ("employees.csv", "\r\n".join(lines).encode(), "text/csv")}}


class TestConcurrentImports:
    async def test_overlapping_imports_write_one_file_whole_and_nothing_of_the_other(
        self, admin_user_client: AsyncClient, sessionmaker: Sessionmaker
    ) -> None:
        for round_ in range(5):
            base = 1000 * (round_ + 1)
            files = {"A": range(base, base + 300), "B": range(base + 150, base + 450)}
            responses = await asyncio.gather(
                *(
                    admin_user_client.post("/employees/import", **import_body(ids, name))
                    for name, ids in files.items()
                )
            )

            codes = statuses(responses)
            assert codes[201] == 1 and codes[201] + codes[409] + codes[422] == 2, codes
            winner = "AB"[[r.status_code for r in responses].index(201)]
            rows = await rows_between(sessionmaker, base, base + 449)
            assert [r["emp_id"] for r in rows] == list(files[winner])
            assert {r["emp_name"].split()[0] for r in rows} == {winner}

    async def test_creates_racing_an_import_take_each_emp_id_once(
        self, admin_user_client: AsyncClient, sessionmaker: Sessionmaker
    ) -> None:
        ids = range(500, 600)
        creates = [
            admin_user_client.post("/employees/", json=employee_payload(e, emp_name=f"C {e}"))
            for e in ids[::10]
        ]
        responses = await asyncio.gather(
            admin_user_client.post("/employees/import", **import_body(ids, "I")), *creates
        )

        imported, created = responses[0], responses[1:]
        statuses(responses)
        rows = await rows_between(sessionmaker, 500, 599)
        if imported.status_code == 201:
            assert [r["emp_id"] for r in rows] == list(ids)
            assert {c.status_code for c in created} == {409}
        else:
            assert imported.status_code in (409, 422), imported.text
            won = [c.json()["emp_id"] for c in created if c.status_code == 201]
            assert [r["emp_id"] for r in rows] == won
            assert all(r["emp_name"].startswith("C ") for r in rows)
