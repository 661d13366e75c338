"""The report with experiments and label-queue rows, and data that looks like HTML.

Reflected rows once carried SQLAlchemy ``quoted_name`` keys that orjson refused (a 500 from
``GET /v1/report`` as soon as an experiment existed), and the embedded JSON escaped only ``</``,
so a user id such as ``<!--<script>`` swallowed the rest of the page.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import dataflywheel as dfw
from dataflywheel.insight.dashboard import render_page, script_json

Client = Callable[[str], Any]
NASTY = ("<!--<script>", "</script><script>alert(1)</script>", "a&b\u2028c\u2029>")
PREFIX = "<script>window.FLYWHEEL_DATA = "
SUFFIX = ";</script>"


def _embedded(html: str) -> Any:
    start = html.index(PREFIX) + len(PREFIX)
    return json.loads(html[start : html.index(SUFFIX, start)])


def _template_tags(html: str) -> None:
    """Only the page's own three <script> elements, and no comment opened by data."""
    assert html.count("<script") == 3
    assert html.count("</script>") == 3
    assert "<!--" not in html


def _fill_nasty(wheel: dfw.Flywheel) -> None:
    """An experiment and a label-queue row whose names look like markup."""
    rollout = wheel.loop.rollout
    arms = [
        {"name": NASTY[1], "policy": {"name": "greedy"}},
        {"name": "b", "policy": {"name": "epsilon_greedy", "epsilon": 0.1}},
    ]
    rollout.experiments.create({"name": NASTY[0], "type": "ab", "arms": arms})
    when = {"field": "type", "op": "eq", "value": "dislike"}
    trigger = rollout.queue.add_trigger({"name": NASTY[0], "task": NASTY[2], "when": when})
    assert rollout.queue.enqueue(trigger, [{"user_id": NASTY[0], "item_id": NASTY[1]}], time.time())


def _check_report(html: str) -> None:
    _template_tags(html)
    data = _embedded(html)
    assert data["experiments"]["count"] == 1
    experiment = data["experiments"]["rows"][0]
    assert experiment["name"] == NASTY[0]
    assert experiment["arms"][0]["name"] == NASTY[1]
    assert data["labels"]["count"] == 1
    case = data["labels"]["rows"][0]
    assert (case["user_id"], case["item_id"], case["task"]) == (NASTY[0], NASTY[1], NASTY[2])
    assert case["reason"] == f"trigger {NASTY[0]}"


def test_report_route_with_experiment_and_label_rows(
    wheel: dfw.Flywheel, client_for: Client, store_url: str
) -> None:
    _fill_nasty(wheel)
    client = client_for(store_url)
    response = client.get("/v1/report")
    assert response.status_code == 200, response.text[:500]
    _check_report(response.text)
    dashboard = client.get("/v1/dashboard")
    assert dashboard.status_code == 200
    assert dashboard.json()["labels"]["rows"][0]["user_id"] == NASTY[0]


def test_report_command_with_experiment_and_label_rows(
    wheel: dfw.Flywheel, store_url: str, tmp_path: Path
) -> None:
    _fill_nasty(wheel)
    output = tmp_path / "report.html"
    flywheel = Path(sys.executable).with_name("flywheel")
    done = subprocess.run(
        [str(flywheel), "report", "-o", str(output), "--db", store_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    _check_report(output.read_text(encoding="utf-8"))


def test_embedded_data_round_trips_and_stays_inert() -> None:
    data = {"users": list(NASTY), NASTY[0]: {"nested": NASTY[1]}, "n": 1.5, "none": None}
    html = render_page(data)
    assert _embedded(html) == data
    start = html.index(PREFIX) + len(PREFIX)
    embedded = html[start : html.index(SUFFIX, start)]
    assert not set(embedded) & set("<>&\u2028\u2029")
    assert "<script" not in html[html.index("FLYWHEEL_DATA") : html.index(SUFFIX)]


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.sampled_from("<>&/!-\u2028\u2029'\"\\ascript") | st.characters()),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_script_json_parses_back_without_markup_characters(value: Any) -> None:
    text = script_json(value)
    assert json.loads(text) == value
    assert not set(text) & set("<>&\u2028\u2029")
