"""The ``repr()`` of the objects users print (the client, its token manager, jobs; sync and async) never
shows an account identifier: an application id or a user id is ``<redacted>``; the process id, a random
handle that support needs, stays."""

from __future__ import annotations

from typing import Any

import pytest

from adcreative_async import AdCreativeClient
from adcreative_async.sync import SyncAdCreativeClient

APPLICATION = "0c5f4ae1-1111-4a0b-9c3d-5e6f7a8b9c0d"
USER = "7d1e2f3a-2222-4b5c-8d9e-0a1b2c3d4e5f"
PROCESS = "9a8b7c6d-3333-4e5f-a0b1-c2d3e4f5a6b7"


def _options() -> dict[str, Any]:
    """The options of both clients: made-up credentials, an account whose ids must not show."""
    return {
        "api_key": "key-0000",
        "api_secret": "secret-0000",
        "jwt_private_key": "private-0000",
        "application_id": APPLICATION,
        "base_url": "http://127.0.0.1:9",
        "user_id": USER,
        "trust_env": False,
    }


def _assert_no_account_ids(text: str) -> None:
    assert APPLICATION not in text.lower()
    assert USER not in text.lower()


def test_the_async_client_its_token_manager_and_a_job_show_no_account_id() -> None:
    client = AdCreativeClient(**_options())
    job = client.background_remover.job(PROCESS, user_id=USER, task_ids=["t-1"])
    shown = [repr(client), repr(client._transport.tokens), repr(job), str(job)]
    for text in shown:
        _assert_no_account_ids(text)
    assert "<redacted>" in repr(client)
    assert "<redacted>" in repr(job)
    assert PROCESS in repr(job)  # the random handle stays


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_the_sync_client_and_its_jobs_show_no_account_id() -> None:
    with SyncAdCreativeClient(**_options()) as client:
        job = client.background_remover.job(PROCESS, user_id=USER, task_ids=["t-1"])
        for text in (repr(client), repr(job), str(job)):
            _assert_no_account_ids(text)
        assert PROCESS in repr(job)
