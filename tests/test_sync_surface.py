"""The sync client's surface is the async one's: every public method, property and attribute of the
async client, its resources, jobs, bulk runs, download streams and iterators has its sync twin, with the
same parameters. A new async method without its twin fails here."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import adcreative_async
import adcreative_async.sync
from adcreative_async import AdCreativeClient, BulkRun, DownloadStream, RenderJob, SyncAdCreativeClient
from adcreative_async._downloads import _StreamChunks
from adcreative_async._jobs import TaskUpdates, _AsCompleted
from adcreative_async.resources import CreativesResource, Resource
from adcreative_async.sync import (
    BlockingIterator,
    SyncBulkRun,
    SyncCreativesResource,
    SyncDownloadStream,
    SyncRenderJob,
    SyncResource,
)
from adcreative_async.testing import pytest_plugin

CREDENTIALS: dict[str, Any] = {
    "application_id": "00000000-0000-4000-8000-000000000001",
    "api_key": "key",
    "api_secret": "secret",
    "jwt_private_key": "private",
    "base_url": "http://127.0.0.1:9",
}

#: The async protocol's names and their sync counterparts.
RENAMED = {
    "aclose": "close",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__aiter__": "__iter__",
    "__anext__": "__next__",
}


def public_names(cls: type[Any]) -> set[str]:
    """Public methods and properties of ``cls`` (inherited ones included), and its async protocol."""
    return {n for n in dir(cls) if not n.startswith("_") or n in RENAMED or n in RENAMED.values()}


def parameters(func: Any) -> list[tuple[str, Any, Any]]:
    signature = inspect.signature(func)
    return [
        (p.name, p.kind, p.default) for p in signature.parameters.values() if p.name not in ("self", "cls")
    ]


def differences(
    async_cls: type[Any],
    sync_cls: type[Any],
    instance_names: frozenset[str] | set[str] = frozenset(),
    sync_instance: Any = None,
) -> list[str]:
    """What ``sync_cls`` lacks of ``async_cls``: missing names, properties that are not readable, and
    methods whose parameters differ (names, kinds, defaults)."""
    problems: list[str] = []
    sync_names = public_names(sync_cls) | (set(vars(sync_instance)) if sync_instance is not None else set())
    for name in sorted(public_names(async_cls) | instance_names):
        twin = RENAMED.get(name, name)
        if twin not in sync_names:
            problems.append(f"{sync_cls.__name__} has no {twin!r} (the twin of {async_cls.__name__}.{name})")
            continue
        async_attr = inspect.getattr_static(async_cls, name, None)
        if callable(async_attr) or isinstance(async_attr, (classmethod, staticmethod)):
            sync_attr = getattr(sync_instance if sync_instance is not None else sync_cls, twin)
            if name in ("__aexit__",):
                continue  # (exc_type, exc, tb) both
            if not callable(sync_attr):
                problems.append(f"{sync_cls.__name__}.{twin} is not callable")
            elif parameters(getattr(async_cls, name)) != parameters(sync_attr):
                problems.append(
                    f"{sync_cls.__name__}.{twin}{inspect.signature(sync_attr)} has not the parameters of "
                    f"{async_cls.__name__}.{name}{inspect.signature(getattr(async_cls, name))}"
                )
    return problems


@pytest.fixture
def clients() -> tuple[AdCreativeClient, SyncAdCreativeClient]:
    sync_client = SyncAdCreativeClient(**CREDENTIALS)
    return sync_client.async_client, sync_client


def test_the_client_has_every_method_property_and_attribute(
    clients: tuple[AdCreativeClient, SyncAdCreativeClient],
) -> None:
    async_client, sync_client = clients
    instance = {n for n in vars(async_client) if not n.startswith("_")}
    assert differences(AdCreativeClient, SyncAdCreativeClient, instance, sync_client) == []
    assert parameters(AdCreativeClient.__init__) == parameters(SyncAdCreativeClient)


def test_every_resource_has_its_twin(clients: tuple[AdCreativeClient, SyncAdCreativeClient]) -> None:
    async_client, sync_client = clients
    resources = {n: r for n, r in vars(async_client).items() if isinstance(r, Resource)}
    assert len(resources) == 8
    for name, resource in resources.items():
        twin = getattr(sync_client, name)
        assert isinstance(twin, SyncResource), name
        assert twin.async_resource is resource
        assert differences(type(resource), type(twin), sync_instance=twin) == [], name


def test_jobs_bulk_runs_streams_and_iterators_have_their_twins(
    clients: tuple[AdCreativeClient, SyncAdCreativeClient],
) -> None:
    _, sync_client = clients
    job = RenderJob(feature="creatives", process_id="p", user_id="u")
    slots = {n for n in RenderJob.__slots__ if not n.startswith("_")}
    assert differences(RenderJob, SyncRenderJob, slots, SyncRenderJob(job, sync_client)) == []
    assert differences(BulkRun, SyncBulkRun) == []
    stream_attrs = {"process_id", "task_id"}
    assert differences(DownloadStream, SyncDownloadStream, stream_attrs) == []
    for iterator in (TaskUpdates, _AsCompleted, _StreamChunks):
        assert differences(iterator, BlockingIterator) == [], iterator


def test_module_level_functions_and_fixtures_have_their_twins() -> None:
    assert parameters(adcreative_async.as_completed) == parameters(adcreative_async.sync.as_completed)
    assert hasattr(pytest_plugin, "adcreative_sync_client")
    assert "adcreative_sync_client" in pytest_plugin.__all__


def test_a_new_async_method_without_a_twin_is_reported() -> None:
    class Extended(CreativesResource):
        async def regenerate(self, process_id: str, *, strength: float = 0.5) -> RenderJob:
            raise NotImplementedError

        async def edit(self, *args: Any, new_parameter: int = 0, **kwargs: Any) -> RenderJob:
            raise NotImplementedError

    problems = differences(Extended, SyncCreativesResource)
    assert any("has no 'regenerate'" in p for p in problems)
    assert any("SyncCreativesResource.edit" in p and "new_parameter" in p for p in problems)
    assert len(problems) == 2
