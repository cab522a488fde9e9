"""GET /employees/{emp_id} served by `ReadEmployeeRoute`: the same answers as FastAPI's handler,
at the root path and under /v1 alike.

Each request below is sent twice: once as clients send it, and once with the route's direct
path stepped aside (an override of one of the dependencies it calls, which only FastAPI's
handler honours). Status, body and headers must not differ.
"""

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import fastapi.routing
import pytest
from fastapi.routing import iter_route_contexts
from httpx import AsyncClient, Response

from app.accounts.models import User
from app.db.reader import PooledReader
from app.db.session import get_reader
from app.employees.read_route import CALLED_DIRECTLY, ReadEmployeeRoute, plain_emp_id
from app.main import create_app
from tests.conftest import employee_payload

# Everything but the per-request id.
IGNORED_HEADERS = {"x-request-id"}


@pytest.fixture(params=["", "/v1"], ids=["root", "v1"])
def prefix(request: pytest.FixtureRequest) -> str:
    """The route is served at the root and under the version prefix: both ways at each."""
    return str(request.param)


def answer(response: Response) -> tuple[int, bytes, dict[str, str]]:
    headers = {k: v for k, v in response.headers.items() if k not in IGNORED_HEADERS}
    return response.status_code, response.content, headers


@pytest.fixture
def solves(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths for which FastAPI solved a route's dependencies, in order."""
    seen: list[str] = []
    solve = fastapi.routing.solve_dependencies

    async def counting(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["request"].url.path)
        return await solve(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    return seen


async def both_ways(app: Any, client: AsyncClient, path: str, **headers: str) -> list[Any]:
    direct = answer(await client.get(path, headers=headers))
    app.dependency_overrides[get_reader] = get_reader  # the same reader, solved by FastAPI
    try:
        standard = answer(await client.get(path, headers=headers))
    finally:
        del app.dependency_overrides[get_reader]
    return [direct, standard]


@pytest.fixture
async def stored(make_employees: Callable[..., Any]) -> Any:
    (employee,) = await make_employees(employee_payload(emp_id=7))
    return employee


class TestSameAnswers:
    @pytest.mark.parametrize(
        "path",
        [
            "/employees/7",  # found
            "/employees/8",  # not found
            "/employees/2147483647",  # the largest id
            "/employees/007",  # not plain: FastAPI's handler reads 7
            "/employees/0",
            "/employees/-7",
            "/employees/2147483648",
            "/employees/seven",
            "/employees/%207",
        ],
    )
    async def test_paths(self, app, normal_user_client, stored, prefix, path):
        direct, standard = await both_ways(app, normal_user_client, prefix + path)
        assert direct == standard
        assert direct[0] in (200, 404, 422)

    @pytest.mark.parametrize(
        "if_none_match",
        ["{etag}", "W/{etag}", "*", '"other"', '{etag}, "other"', "x" * 1000, "x" * 1001, ""],
    )
    async def test_if_none_match(self, app, normal_user_client, stored, prefix, if_none_match):
        header = if_none_match.format(etag=stored.etag)
        direct, standard = await both_ways(
            app, normal_user_client, f"{prefix}/employees/7", **{"If-None-Match": header}
        )
        assert direct == standard
        assert direct[0] in (200, 304, 412, 422)

    @pytest.mark.parametrize(
        "authorization",
        [None, "Bearer", "Bearer not.a.token", "Basic amFuZTpzZWNyZXQ=", "bearer {}"],
    )
    async def test_credentials(
        self, app, client, normal_user, token_for, stored, prefix, authorization
    ):
        headers = {}
        if authorization is not None:
            headers["Authorization"] = authorization.format(token_for(normal_user))
        direct, standard = await both_ways(app, client, f"{prefix}/employees/7", **headers)
        assert direct == standard

    async def test_accounts_that_may_no_longer_read(
        self, app, make_user, client_for, stored, sessionmaker, prefix
    ):
        inactive: User = await make_user("gone", is_active=False)
        signed_out: User = await make_user("signed.out")
        async with client_for(inactive) as gone, client_for(signed_out) as stale:
            async with sessionmaker() as session:
                signed_out.token_version += 1
                session.add(signed_out)
                await session.commit()
            for client in (gone, stale):
                direct, standard = await both_ways(app, client, f"{prefix}/employees/7")
                assert direct == standard
                assert direct[0] == 401


class TestWhichHandler:
    async def test_a_plain_request_is_answered_without_solving(
        self, normal_user_client, stored, solves, prefix
    ):
        response = await normal_user_client.get(
            f"{prefix}/employees/7", headers={"If-None-Match": '"x"'}
        )
        assert response.status_code == 200
        assert response.json()["emp_id"] == 7
        assert solves == []

    @pytest.mark.parametrize("path", ["/employees/007", "/employees/0"])
    async def test_anything_else_goes_to_fastapis_handler(
        self, normal_user_client, stored, solves, prefix, path
    ):
        response = await normal_user_client.get(prefix + path)
        assert response.status_code in (200, 422)
        assert solves == [prefix + path]

    async def test_an_override_is_honoured(self, app, normal_user_client, stored, solves, prefix):
        app.dependency_overrides[get_reader] = get_reader
        response = await normal_user_client.get(f"{prefix}/employees/7")
        assert response.status_code == 200
        assert solves == [f"{prefix}/employees/7"]

    async def test_other_routes_are_untouched(self, normal_user_client, stored, solves, prefix):
        await normal_user_client.get(f"{prefix}/employees/")
        assert solves == [f"{prefix}/employees/"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 1),
        ("7", 7),
        ("2147483647", 2147483647),
        ("2147483648", None),
        ("9999999999", None),
        ("12345678901", None),
        ("0", None),
        ("007", None),
        ("-1", None),
        ("+1", None),
        (" 1", None),
        ("1 ", None),
        ("1_000", None),
        ("\u0661", None),  # an Arabic-Indic digit: Python's int() would read it
        ("", None),
    ],
)
def test_plain_emp_id(text, expected):
    assert plain_emp_id(text) == expected


@pytest.mark.postgres_only
class TestWithoutASession:
    """A served app on asyncpg reads with pooled connections: neither way opens a session."""

    @pytest.fixture
    def sessions_opened(self, app: Any) -> list[int]:
        opened: list[int] = []
        database = app.state.database
        assert isinstance(database.reader, PooledReader)

        def counting() -> Any:
            opened.append(1)
            return database.sessions()

        app.state.database = replace(database, sessions=counting, read_sessions=counting)
        return opened

    @pytest.mark.parametrize(
        ("path", "status", "sessions"),
        [("/employees/7", 200, 0), ("/employees/8", 404, 0), ("/employees/007", 200, 0)],
    )
    async def test_same_answers(
        self,
        app,
        engine,
        normal_user_client,
        stored,
        sessions_opened,
        prefix,
        path,
        status,
        sessions,
    ):
        direct, standard = await both_ways(app, normal_user_client, prefix + path)
        assert direct == standard
        assert direct[0] == status
        assert len(sessions_opened) == sessions
        assert engine.pool.checkedout() == 0

    async def test_an_account_gone_meanwhile_is_refused(
        self, app, engine, make_user, client_for, stored, sessions_opened, sessionmaker
    ):
        gone: User = await make_user("gone")
        async with client_for(gone) as client:
            async with sessionmaker() as session:
                await session.delete(await session.get(User, gone.id))
                await session.commit()
            direct, standard = await both_ways(app, client, "/v1/employees/7")
        assert direct == standard
        assert direct[0] == 401
        assert engine.pool.checkedout() == 0


def test_the_direct_path_honours_every_parameter_of_the_declared_handler():
    """`ReadEmployeeRoute` answers with the declared handler's dependencies called by hand: a
    parameter added to `read_employee` must be honoured there too, then listed here. Both
    copies of the route (root and /v1) are the route class, with the same dependencies."""
    routes = {
        r.path_format: r
        for r in iter_route_contexts(create_app().router.routes)
        if r.path_format in ("/employees/{emp_id}", "/v1/employees/{emp_id}") and "GET" in r.methods
    }

    assert len(routes) == 2
    for route in routes.values():
        assert isinstance(route.original_route, ReadEmployeeRoute)
        dependant = route.dependant
        calls = {dependency.call for dependency in dependant.dependencies}
        params = {
            kind: {param.name for param in getattr(dependant, f"{kind}_params")}
            for kind in ("path", "query", "header", "cookie", "body")
        }
        assert calls == set(CALLED_DIRECTLY)
        assert params == {
            "path": {"emp_id"},
            "query": set(),
            "header": {"if_none_match"},
            "cookie": set(),
            "body": set(),
        }
