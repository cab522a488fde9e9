"""Methods are matched per path: a 405's `Allow` names every method the path takes, and a literal
path (`/employees/import`) answers a method it does not take with 405, not as an `{emp_id}`."""

import pytest
from fastapi.routing import iter_route_contexts

from app.http.routing import allowed_methods
from app.main import create_app


@pytest.mark.parametrize("prefix", ["", "/v1"], ids=["root", "v1"])
@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/employees/1", "GET, PUT, PATCH, DELETE"),
        ("PUT", "/employees/", "GET, POST"),
        ("POST", "/users/00000000-0000-0000-0000-000000000000", "GET, PATCH, DELETE"),
        ("PUT", "/employees/export.csv", "GET"),
        ("PATCH", "/employees/export.csv", "GET"),
        ("PUT", "/employees/import", "POST"),
        ("GET", "/employees/import", "POST"),
        ("PATCH", "/users/me", "GET"),
        ("DELETE", "/users/me", "GET"),
        ("POST", "/employees/1/history", "GET"),
    ],
)
async def test_a_method_the_path_does_not_take_is_405_naming_every_one_it_does(
    admin_user_client, prefix, method, path, allow
):
    response = await admin_user_client.request(method, prefix + path)

    assert response.status_code == 405
    assert response.headers["Allow"] == allow
    assert response.json() == {"detail": "Method Not Allowed"}


@pytest.mark.parametrize("prefix", ["", "/v1"], ids=["root", "v1"])
async def test_the_parameter_routes_still_validate_their_values(admin_user_client, prefix):
    assert (await admin_user_client.get(f"{prefix}/employees/abc")).status_code == 422
    assert (await admin_user_client.patch(f"{prefix}/users/not-a-uuid", json={})).status_code == 422
    assert (await admin_user_client.get(f"{prefix}/employees/import/history")).status_code == 404


def test_every_literal_path_owns_its_methods():
    """For each path without parameters, every method it does not take is a 405 for it, not a
    match of a parameter route beside it."""
    app = create_app()
    routes = [r for r in iter_route_contexts(app.router.routes) if r.methods]
    literal = {r.path for r in routes if "{" not in r.path}
    owners = {"/employees/export.csv", "/employees/import", "/users/me"}
    assert owners | {f"/v1{path}" for path in owners} <= literal
    for path in literal:
        takers: dict[str, str] = {}
        for route in routes:
            if route.path_regex.match(path) is not None:
                for method in route.methods:
                    takers.setdefault(method, route.path)
        assert set(takers) == set(allowed_methods(app, path)), path
        assert set(takers.values()) == {path}, (path, takers)
