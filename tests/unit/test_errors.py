"""The error hierarchy: one place says which HTTP status and WebSocket close code each
error is told with, and the HTTP app answers any of them the same way."""

from __future__ import annotations

import inspect

import httpx
import pytest
from conftest import StartServer, http_client

import workyard
from workyard import (
    Conflict,
    Hub,
    InvalidInput,
    InvalidSetting,
    NotFound,
    Settings,
    TooLarge,
    Unauthorized,
    Unavailable,
    WorkyardError,
)
from workyard._errors import MESSAGE_TOO_BIG, POLICY_VIOLATION, TRY_AGAIN_LATER
from workyard.store import Change, Result
from workyard.testing import MemoryStore

TABLE = [
    (InvalidInput, 400, POLICY_VIOLATION),
    (InvalidSetting, 400, POLICY_VIOLATION),
    (Unauthorized, 401, POLICY_VIOLATION),
    (NotFound, 404, POLICY_VIOLATION),
    (Conflict, 409, POLICY_VIOLATION),
    (TooLarge, 413, MESSAGE_TOO_BIG),
    (Unavailable, 503, TRY_AGAIN_LATER),
]


@pytest.mark.parametrize(("cls", "status", "close_code"), TABLE)
def test_each_error_knows_its_status_and_close_code(
    cls: type[WorkyardError], status: int, close_code: int
) -> None:
    error = cls("why")
    assert isinstance(error, WorkyardError)
    assert (error.status, error.close_code) == (status, close_code)
    assert error.body() == {"error": "why"}


def test_the_docstring_tree_names_every_error_class() -> None:
    errors = {name for name, obj in vars(workyard._errors).items()
              if inspect.isclass(obj) and issubclass(obj, WorkyardError)}
    tree = workyard._errors.__doc__ or ""
    assert errors == {cls.__name__ for cls, _, _ in TABLE} | {"WorkyardError"}
    assert all(f" {name} " in tree for name in errors)


def test_invalid_input_is_a_value_error_so_validators_can_raise_it() -> None:
    with pytest.raises(ValueError, match="bad"):
        raise InvalidInput("bad")


def test_extra_fields_join_the_body_and_a_close_reason_fits_a_control_frame() -> None:
    error = Conflict("x" * 500, task={"id": "t"})
    assert error.body() == {"error": "x" * 500, "task": {"id": "t"}}
    assert len(error.reason.encode()) <= 123


class _FailingStore(MemoryStore):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def commit(self, *changes: Change) -> list[Result]:
        raise self.error


async def _submit_to(start_server: StartServer, store: MemoryStore) -> httpx.Response:
    served = await start_server(Settings(port=0, db=":memory:"), hub=Hub(store))
    async with http_client(served.url) as http:
        return await http.post("/tasks", json={"name": "t"})


async def test_a_store_that_is_unavailable_makes_a_503_with_its_message(
    start_server: StartServer
) -> None:
    response = await _submit_to(start_server, _FailingStore(Unavailable("disk full")))
    assert response.status_code == 503
    assert response.json() == {"error": "disk full"}


async def test_any_other_store_failure_is_a_500_not_a_503(start_server: StartServer) -> None:
    response = await _submit_to(start_server, _FailingStore(RuntimeError("bug")))
    assert response.status_code == 500
    assert response.json() == {"error": "internal error: RuntimeError"}
