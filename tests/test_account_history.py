"""The account history: role changes, (de)activations and deletions, each recorded with who
acted, when and in which request, in the transaction of the change; `GET /users/{id}/history`."""

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accounts import service
from app.accounts.access import Role
from app.accounts.crud import LAST_ADMIN
from app.accounts.history import crud as history_crud
from app.accounts.history import kinds
from app.accounts.history.models import AccountEvent, EventActor
from app.accounts.models import User

Sessionmaker = async_sessionmaker[AsyncSession]
EVENT_FIELDS = {
    "id",
    "kind",
    "account_id",
    "account_username",
    "occurred_at",
    "actor_id",
    "actor_username",
    "request_id",
    "changes",
}


async def events(sessionmaker: Sessionmaker) -> list[AccountEvent]:
    async with sessionmaker() as session:
        statement = select(AccountEvent).order_by(AccountEvent.id)  # type: ignore[arg-type]
        return list((await session.execute(statement)).scalars())


async def stored_user(sessionmaker: Sessionmaker, user_id: uuid.UUID) -> User | None:
    async with sessionmaker() as session:
        return await session.get(User, user_id)


def history(user: User | uuid.UUID) -> str:
    return f"/users/{getattr(user, 'id', user)}/history"


def link_offsets(response: Response) -> dict[str, tuple[int, int]]:
    result = {}
    for rel, link in response.links.items():
        query = parse_qs(urlsplit(link["url"]).query)
        result[rel] = (int(query["offset"][0]), int(query["limit"][0]))
    return result


class TestEventsRecorded:
    async def test_role_and_activation_changes_and_deletion_with_actor_and_request(
        self,
        admin_user_client: AsyncClient,
        admin_user: User,
        normal_user: User,
        sessionmaker: Sessionmaker,
    ) -> None:
        started = datetime.now(UTC)
        await admin_user_client.patch(
            f"/users/{normal_user.id}", json={"role": "auditor"}, headers={"X-Request-ID": "r-1"}
        )
        await admin_user_client.patch(
            f"/users/{normal_user.id}",
            json={"is_admin": True, "is_active": False},
            headers={"X-Request-ID": "r-2"},
        )
        await admin_user_client.delete(f"/users/{normal_user.id}", headers={"X-Request-ID": "r-3"})

        rows = await events(sessionmaker)
        assert [(row.kind, row.changes, row.request_id) for row in rows] == [
            (kinds.ROLE_CHANGED, {"role": {"before": "user", "after": "auditor"}}, "r-1"),
            (kinds.ROLE_CHANGED, {"role": {"before": "auditor", "after": "admin"}}, "r-2"),
            (kinds.ACTIVATION_CHANGED, {"is_active": {"before": True, "after": False}}, "r-2"),
            (
                kinds.ACCOUNT_DELETED,
                {
                    "role": {"before": "admin", "after": None},
                    "is_active": {"before": False, "after": None},
                },
                "r-3",
            ),
        ]
        assert {(row.account_id, row.account_username) for row in rows} == {
            (normal_user.id, "jane.doe")
        }
        assert {(row.actor_id, row.actor_username) for row in rows} == {
            (admin_user.id, "root.admin")
        }
        assert all(started - timedelta(seconds=1) <= row.occurred_at for row in rows)
        assert all(row.occurred_at <= datetime.now(UTC) for row in rows)

    async def test_the_generated_request_id_is_the_one_returned(
        self, admin_user_client: AsyncClient, normal_user: User, sessionmaker: Sessionmaker
    ) -> None:
        response = await admin_user_client.patch(
            f"/users/{normal_user.id}", json={"is_active": False}
        )

        (row,) = await events(sessionmaker)
        assert row.request_id == response.headers["x-request-id"]

    @pytest.mark.parametrize(
        "body",
        [{"role": "user"}, {"is_admin": False}, {"is_active": True}, {}, {"is_admin": True}],
    )
    async def test_a_change_that_changes_nothing_records_nothing(
        self,
        admin_user_client: AsyncClient,
        make_user: Callable[..., Any],
        sessionmaker: Sessionmaker,
        body: dict[str, Any],
    ) -> None:
        account = await make_user("some.one", role=Role.admin if body.get("is_admin") else None)

        response = await admin_user_client.patch(f"/users/{account.id}", json=body)

        assert response.status_code == 200
        assert await events(sessionmaker) == []

    async def test_a_refused_change_records_nothing(
        self,
        admin_user_client: AsyncClient,
        admin_user: User,
        auditor_user_client: AsyncClient,
        normal_user: User,
        sessionmaker: Sessionmaker,
    ) -> None:
        refused = [
            await admin_user_client.patch(f"/users/{admin_user.id}", json={"role": "auditor"}),
            await admin_user_client.patch(f"/users/{admin_user.id}", json={"is_active": False}),
            await admin_user_client.delete(f"/users/{admin_user.id}"),
            await admin_user_client.patch(f"/users/{normal_user.id}", json={"role": "boss"}),
            await admin_user_client.patch(f"/users/{uuid.uuid4()}", json={"role": "admin"}),
            await auditor_user_client.patch(f"/users/{normal_user.id}", json={"role": "admin"}),
            await auditor_user_client.delete(f"/users/{normal_user.id}"),
        ]

        assert [r.status_code for r in refused] == [409, 409, 409, 422, 404, 403, 403]
        assert refused[0].json() == {"detail": LAST_ADMIN}
        assert await events(sessionmaker) == []

    @pytest.mark.parametrize(
        ("method", "body"),
        [("patch", {"role": "auditor"}), ("patch", {"is_active": False}), ("delete", None)],
    )
    async def test_a_change_whose_event_fails_is_rolled_back(
        self,
        admin_user_client: AsyncClient,
        normal_user: User,
        sessionmaker: Sessionmaker,
        monkeypatch: pytest.MonkeyPatch,
        method: str,
        body: dict[str, Any] | None,
    ) -> None:
        # The event is written after the change, in its transaction: when writing it fails,
        # the change must not be committed without it.
        record = history_crud.record_account_event

        async def failing(**kwargs: Any) -> None:
            await record(**kwargs)
            raise RuntimeError("the event could not be written")

        monkeypatch.setattr(history_crud, "record_account_event", failing)

        with pytest.raises(RuntimeError, match="could not be written"):
            await admin_user_client.request(
                method, f"/users/{normal_user.id}", **({"json": body} if body else {})
            )

        row = await stored_user(sessionmaker, normal_user.id)
        assert row is not None
        assert (row.role, row.is_active, row.token_version) == ("user", True, 0)
        assert await events(sessionmaker) == []

    async def test_record_account_event_joins_the_callers_transaction(
        self, sessionmaker: Sessionmaker, normal_user: User
    ) -> None:
        actor = EventActor(user_id=None, username="cli:test", request_id=None)
        async with sessionmaker() as session:
            await history_crud.record_account_event(
                session=session,
                account_id=normal_user.id,
                account_username=normal_user.username,
                kind="api_key_created",
                actor=actor,
            )
            await session.rollback()
        assert await events(sessionmaker) == []

        async with sessionmaker() as session:
            await history_crud.record_account_event(
                session=session,
                account_id=normal_user.id,
                account_username=normal_user.username,
                kind="api_key_created",
                actor=actor,
                changes={"key": {"before": None, "after": "k1"}},
            )
            await session.commit()
        (row,) = await events(sessionmaker)
        assert (row.kind, row.actor_id, row.actor_username) == ("api_key_created", None, "cli:test")
        assert row.changes == {"key": {"before": None, "after": "k1"}}

    async def test_promotion_from_the_command_line_service_is_recorded(
        self, sessionmaker: Sessionmaker, make_user: Callable[..., Any]
    ) -> None:
        dormant = await make_user("dormant", role=Role.auditor, is_active=False)
        actor = EventActor(user_id=None, username="cli:create-admin", request_id=None)
        async with sessionmaker() as session:
            user = await session.get(User, dormant.id)
            assert user is not None
            await service.promote_to_admin(session=session, user=user, actor=actor)

        rows = await events(sessionmaker)
        assert [(row.kind, row.changes) for row in rows] == [
            (kinds.ROLE_CHANGED, {"role": {"before": "auditor", "after": "admin"}}),
            (kinds.ACTIVATION_CHANGED, {"is_active": {"before": False, "after": True}}),
        ]
        assert {row.actor_username for row in rows} == {"cli:create-admin"}


class TestHistoryEndpoint:
    async def change_roles(self, client: AsyncClient, user: User, times: int) -> None:
        for n in range(times):
            role = ("auditor", "user")[n % 2]
            response = await client.patch(f"/users/{user.id}", json={"role": role})
            assert response.status_code == 200

    async def test_newest_first(
        self, admin_user_client: AsyncClient, normal_user: User, admin_user: User
    ) -> None:
        await self.change_roles(admin_user_client, normal_user, 2)
        await admin_user_client.patch(f"/users/{normal_user.id}", json={"is_active": False})

        response = await admin_user_client.get(history(normal_user))

        assert response.status_code == 200
        entries = response.json()
        assert all(set(entry) == EVENT_FIELDS for entry in entries)
        assert [(e["kind"], e["changes"]) for e in entries] == [
            ("activation_changed", {"is_active": {"before": True, "after": False}}),
            ("role_changed", {"role": {"before": "auditor", "after": "user"}}),
            ("role_changed", {"role": {"before": "user", "after": "auditor"}}),
        ]
        assert entries[0]["actor_id"] == str(admin_user.id)
        assert entries[0]["account_id"] == str(normal_user.id)
        assert response.headers["x-total-count"] == "3"

    async def test_paginated_like_the_employee_history(
        self, admin_user_client: AsyncClient, normal_user: User
    ) -> None:
        await self.change_roles(admin_user_client, normal_user, 5)

        first = await admin_user_client.get(history(normal_user), params={"limit": 2})
        middle = await admin_user_client.get(history(normal_user), params={"limit": 2, "offset": 2})
        last = await admin_user_client.get(history(normal_user), params={"limit": 2, "offset": 4})
        ids = [e["id"] for r in (first, middle, last) for e in r.json()]

        assert [len(r.json()) for r in (first, middle, last)] == [2, 2, 1]
        assert ids == sorted(ids, reverse=True) and len(set(ids)) == 5
        assert {r.headers["x-total-count"] for r in (first, middle, last)} == {"5"}
        assert link_offsets(first) == {"first": (0, 2), "next": (2, 2)}
        assert link_offsets(middle) == {"first": (0, 2), "prev": (0, 2), "next": (4, 2)}
        assert link_offsets(last) == {"first": (0, 2), "prev": (2, 2)}

    @pytest.mark.parametrize(
        "params",
        [{"limit": 0}, {"limit": 101}, {"offset": -1}, {"limit": "x"}, {"offset": 2**31}],
    )
    async def test_bad_page_is_422(
        self, admin_user_client: AsyncClient, normal_user: User, params: dict[str, Any]
    ) -> None:
        response = await admin_user_client.get(history(normal_user), params=params)

        assert response.status_code == 422

    async def test_polling_with_the_page_etag(
        self, auditor_user_client: AsyncClient, admin_user_client: AsyncClient, normal_user: User
    ) -> None:
        await self.change_roles(admin_user_client, normal_user, 1)
        first = await auditor_user_client.get(history(normal_user))
        tag = first.headers["etag"]

        same = await auditor_user_client.get(history(normal_user), headers={"If-None-Match": tag})
        for role in ("user", "auditor"):
            await admin_user_client.patch(f"/users/{normal_user.id}", json={"role": role})
        changed = await auditor_user_client.get(
            history(normal_user), headers={"If-None-Match": tag}
        )

        assert tag.startswith('W/"')
        assert (same.status_code, same.content) == (304, b"")
        assert changed.status_code == 200 and len(changed.json()) == 3

    async def test_a_deleted_accounts_history_stays_readable(
        self, admin_user_client: AsyncClient, auditor_user_client: AsyncClient, normal_user: User
    ) -> None:
        await self.change_roles(admin_user_client, normal_user, 1)
        deleted = await admin_user_client.delete(f"/users/{normal_user.id}")

        gone = await admin_user_client.get(f"/users/{normal_user.id}")
        response = await auditor_user_client.get(history(normal_user))

        assert (deleted.status_code, gone.status_code) == (204, 404)
        assert response.status_code == 200
        assert [e["kind"] for e in response.json()] == ["account_deleted", "role_changed"]
        assert response.json()[0]["account_username"] == "jane.doe"

    async def test_a_new_account_of_the_same_name_has_a_history_of_its_own(
        self,
        admin_user_client: AsyncClient,
        normal_user: User,
        make_user: Callable[..., Any],
    ) -> None:
        await admin_user_client.delete(f"/users/{normal_user.id}")
        again = await make_user("jane.doe")

        response = await admin_user_client.get(history(again))

        assert (response.status_code, response.json()) == (200, [])

    async def test_an_account_without_events_has_an_empty_history(
        self, admin_user_client: AsyncClient, admin_user: User
    ) -> None:
        response = await admin_user_client.get(history(admin_user))

        assert (response.status_code, response.json()) == (200, [])
        assert response.headers["x-total-count"] == "0"

    async def test_unknown_account_is_404(self, admin_user_client: AsyncClient) -> None:
        response = await admin_user_client.get(history(uuid.uuid4()))

        assert response.status_code == 404
        assert response.json() == {"detail": "User not found"}

    @pytest.mark.parametrize("user_id", ["42", "not-a-uuid", "me"])
    async def test_invalid_id_is_a_4xx(self, admin_user_client: AsyncClient, user_id: str) -> None:
        response = await admin_user_client.get(f"/users/{user_id}/history")

        assert response.status_code in (404, 422)

    async def test_regular_user_gets_403(
        self, normal_user_client: AsyncClient, normal_user: User
    ) -> None:
        response = await normal_user_client.get(history(normal_user))

        assert response.status_code == 403
        assert response.json() == {"detail": "Administrator or auditor privileges are required"}

    async def test_anonymous_gets_401(self, client: AsyncClient, normal_user: User) -> None:
        response = await client.get(history(normal_user))

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"

    async def test_served_under_v1_too(
        self, admin_user_client: AsyncClient, normal_user: User
    ) -> None:
        await self.change_roles(admin_user_client, normal_user, 1)

        root = await admin_user_client.get(history(normal_user))
        versioned = await admin_user_client.get("/v1" + history(normal_user))

        assert versioned.status_code == 200
        assert versioned.json() == root.json()
