"""The built-in suites and the corruption list, frozen: tables, order and metadata must never move by accident.

``tests/fixtures/builtin_suites.json`` holds ``get_suite(name).to_dict()`` of every built-in suite and the
``list_corruptions()`` entries (name, category, benchmark) as they were when the suites were still written out by
hand; the suites are now built from the corruption registry and must give exactly the same thing back.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corruptions import get_suite, list_corruptions, list_suites
from corruptions.api import CATEGORIES
from corruptions.base import CORRUPTIONS
from corruptions.suites import ALL_CORRUPTIONS, BENCHMARK, HELD_OUT, SUITES

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "builtin_suites.json"


@pytest.fixture(scope="module")
def frozen() -> dict:
    with open(FIXTURE, encoding="utf-8") as fh:
        return json.load(fh)


def test_the_built_in_suites_are_the_frozen_ones(frozen):
    assert list_suites() == list(frozen["suites"]) == list(SUITES)


@pytest.mark.parametrize("name", ["imagenet-c", "cifar10-c", "imagecorruptions"])
def test_to_dict_is_unchanged(frozen, name):
    # compare the JSON text: it tells 3 from 3.0 and keeps every key and list order
    assert json.dumps(get_suite(name).to_dict()) == json.dumps(frozen["suites"][name])


def _same_python_types(value, expected, where):
    if isinstance(expected, list):
        assert isinstance(value, tuple), f"{where}: expected a tuple, got {value!r}"
        assert len(value) == len(expected), where
        for i, (v, e) in enumerate(zip(value, expected)):
            _same_python_types(v, e, f"{where}[{i}]")
    else:
        assert type(value) is type(expected), f"{where}: {type(value).__name__} != {type(expected).__name__}"
        assert value == expected, where


@pytest.mark.parametrize("name", ["imagenet-c", "cifar10-c", "imagecorruptions"])
def test_params_keep_their_python_types(frozen, name):
    suite = get_suite(name)
    table = frozen["suites"][name]["params"]
    assert list(suite.params) == list(table)
    for corruption, values in table.items():
        _same_python_types(suite.params[corruption], values, f"{name}/{corruption}")
        for severity in range(1, 6):
            _same_python_types(
                suite.param(corruption, severity), values[severity - 1], f"{name}/{corruption}/{severity}"
            )


def test_canonical_lists_are_unchanged(frozen):
    suite = frozen["suites"]["imagenet-c"]
    assert BENCHMARK == tuple(suite["benchmark"]) and len(BENCHMARK) == 15
    assert HELD_OUT == tuple(suite["held_out"]) and len(HELD_OUT) == 4
    assert ALL_CORRUPTIONS == BENCHMARK + HELD_OUT
    for name in list_suites():
        assert get_suite(name).benchmark == BENCHMARK and get_suite(name).held_out == HELD_OUT


def test_list_corruptions_order_and_metadata_are_unchanged(frozen):
    entries = frozen["corruptions"]
    assert list_corruptions() == [e["name"] for e in entries]
    for e in entries:
        meta = CORRUPTIONS.meta(e["name"])
        assert (meta["category"], meta["benchmark"]) == (e["category"], e["benchmark"]), e["name"]
    for flag in (True, False):
        assert list_corruptions(benchmark=flag) == [e["name"] for e in entries if e["benchmark"] is flag]
    for category in CATEGORIES:
        expected = [e["name"] for e in entries if e["category"] == category]
        assert list_corruptions(category=category) == expected
        assert list_corruptions(suite="cifar10-c", category=category) == expected
