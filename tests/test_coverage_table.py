"""README.md's "API coverage" table and the client can never drift apart.

Parsing rule (keep the README to it):

* The table is the first Markdown table after the line ``## API coverage``, before the next line that
  starts with ``## ``. Its rows are consecutive lines starting with ``|``; the first is the header, the
  second the ``|---|`` separator. Cells are split on ``|`` (no ``|`` inside a cell).
* The header has the columns ``Method``, ``Route`` and ``SDK call`` (others are free text).
* ``Method`` is an HTTP method; ``Route`` is the route under ``/api/v1/`` in backticks
  (```Image/Upscaling/AdCreative```); one row per (method, route).
* ``SDK call`` lists the calls that use the route, each written ```client.<resource>.<method>()```
  (several separated by commas). A row without such a call (the token manager, automatic) is allowed.

Checked: every public method of every resource on the client appears in the ``SDK call`` column, every
call named there exists, and every route the SDK calls appears with its method.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from adcreative_async import AdCreativeClient, RenderResource, Resource
from adcreative_async.resources.ad_texts import AD_TEXT_ROUTES
from adcreative_async.resources.scan_my_website import SCAN_MY_WEBSITE_ROUTE

README = Path(__file__).resolve().parent.parent / "README.md"
HEADING = "## API coverage"
CALL = re.compile(r"`client\.([A-Za-z_]\w*)\.([A-Za-z_]\w*)\(\)`")
METHODS = {"GET", "POST", "PUT", "DELETE", "PATCH"}
#: The HTTP method of each render feature's route attribute (the extra routes by their name).
ROUTE_METHODS = {
    "start_route": "POST",
    "user_progress_route": "GET",
    "application_progress_route": "GET",
    "download_route": "GET",
    "edit_route": "POST",
    "recommendations_route": "POST",
    "preset_keys_route": "GET",
}


def coverage_rows(text: str) -> list[dict[str, str]]:
    """The rows of the coverage table as {column: cell} (see the module docstring for the rule)."""
    lines = text.splitlines()
    try:
        start = lines.index(HEADING)
    except ValueError:
        pytest.fail(f"README.md has no line {HEADING!r}")
    table: list[str] = []
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    if len(table) < 3:
        pytest.fail(f"no table (header, separator, rows) under {HEADING!r} in README.md")
    header = _cells(table[0])
    missing = {"Method", "Route", "SDK call"} - set(header)
    assert not missing, f"the coverage table lacks the columns {sorted(missing)} (header: {header})"
    assert re.fullmatch(r"[|\s:-]+", table[1]), f"second line is not a separator: {table[1]!r}"
    rows = []
    for line in table[2:]:
        cells = _cells(line)
        assert len(cells) == len(header), f"row has {len(cells)} cells, header {len(header)}: {line!r}"
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def client_resources() -> dict[str, Resource]:
    """Every resource on a client, by attribute name."""
    client = AdCreativeClient(
        application_id="d5eabbb8-c0f6-4640-94fd-3566edad499f",
        api_key="k",
        api_secret="s",
        jwt_private_key="p",
    )
    return {name: value for name, value in vars(client).items() if isinstance(value, Resource)}


def public_methods(resource: Resource) -> set[str]:
    return {
        name for name, _ in inspect.getmembers(type(resource), inspect.isfunction) if not name.startswith("_")
    }


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    return coverage_rows(README.read_text(encoding="utf-8"))


def named_calls(rows: list[dict[str, str]]) -> set[tuple[str, str]]:
    return {(m.group(1), m.group(2)) for row in rows for m in CALL.finditer(row["SDK call"])}


def test_the_table_has_its_columns_and_one_row_per_endpoint(rows: list[dict[str, str]]) -> None:
    assert {"Method", "Route", "SDK call"} <= set(rows[0])
    endpoints = [(row["Method"], row["Route"]) for row in rows]
    assert len(endpoints) == len(set(endpoints)), "a (method, route) is listed twice"
    for method, route in endpoints:
        assert method in METHODS, method
        assert re.fullmatch(r"`[A-Za-z/]+`", route), f"route not in backticks: {route!r}"


def test_every_public_method_of_every_resource_is_in_the_table(rows: list[dict[str, str]]) -> None:
    resources = client_resources()
    assert {"creatives", "upscaler", "scan_my_website", "ad_texts"} <= set(resources)
    existing = {(name, method) for name, resource in resources.items() for method in public_methods(resource)}
    missing = sorted(existing - named_calls(rows))
    assert not missing, "add to README's coverage table: " + ", ".join(
        f"client.{r}.{m}()" for r, m in missing
    )


def test_every_call_in_the_table_exists(rows: list[dict[str, str]]) -> None:
    resources = client_resources()
    existing = {(name, method) for name, resource in resources.items() for method in public_methods(resource)}
    unknown = sorted(named_calls(rows) - existing)
    assert not unknown, "README's coverage table names calls that do not exist: " + ", ".join(
        f"client.{r}.{m}()" for r, m in unknown
    )


def test_every_route_the_sdk_calls_is_in_the_table(rows: list[dict[str, str]]) -> None:
    listed = {(row["Method"], row["Route"].strip("`")) for row in rows}
    expected: set[tuple[str, str]] = {(method, route) for method, route in AD_TEXT_ROUTES.values()}
    expected.add(("GET", SCAN_MY_WEBSITE_ROUTE))
    for resource in client_resources().values():
        if not isinstance(resource, RenderResource):
            continue
        feature = resource.feature
        attributes = {key: getattr(feature, key) for key in ROUTE_METHODS if hasattr(feature, key)}
        attributes.update(dict(feature.extra_routes))
        for key, route in attributes.items():
            assert key in ROUTE_METHODS, f"give the extra route {key!r} its method in ROUTE_METHODS"
            expected.add((ROUTE_METHODS[key], route))
    missing = sorted(expected - listed)
    assert not missing, f"routes missing from README's coverage table: {missing}"
