"""The built-in suites and the corruption list, frozen: tables, order and metadata must never move by accident.

``tests/fixtures/builtin_suites.json`` holds ``get_suite(name).to_dict()`` of every built-in suite and the
``list_corruptions()`` entries (name, category, benchmark) as they were when the suites were still written out by
hand; the suites are now built from the corruption registry and must give exactly the same thing back.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from corruptions import base, corrupt, get_suite, list_corruptions, list_suites, load_suite
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
    assert CATEGORIES == base.CATEGORIES == ("noise", "blur", "weather", "digital")
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


# --------------------------------------------------------------------------------------------- a new corruption
def _images() -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    return (torch.rand(3, 3, 32, 32, generator=g) * 255).round().to(torch.uint8)


@pytest.fixture
def toy():
    """A corruption added the documented way: one function, one registry entry with both tables."""

    @CORRUPTIONS.register(
        "toy_fade",
        category="digital",
        benchmark=False,
        imagenet_c=(0.1, 0.2, 0.3, 0.4, 0.5),
        cifar10_c=(0.05, 0.1, 0.15, 0.2, 0.25),
    )
    def toy_fade(x, param, ctx):
        return x * (1.0 - param) + 0.5 * param

    yield toy_fade
    CORRUPTIONS.unregister("toy_fade")


def test_a_registered_corruption_joins_user_suites_corrupt_and_the_listing(toy):
    assert list_corruptions()[-1] == "toy_fade"
    assert list_corruptions(category="digital", benchmark=False) == ["saturate", "toy_fade"]
    assert "toy_fade" not in list_corruptions(benchmark=True)

    suite = load_suite(
        {"name": "with-toy", "base": "cifar10-c", "corruptions": ["gaussian_noise", "toy_fade"]}
    )
    assert suite.benchmark == ("gaussian_noise",) and suite.held_out == ("toy_fade",)
    assert suite.params["toy_fade"] == (0.05, 0.1, 0.15, 0.2, 0.25)  # its cifar10_c table
    inet = load_suite({"name": "with-toy-224", "base": "imagenet-c", "held_out": ["toy_fade"]})
    assert inet.param("toy_fade", 5) == 0.5 and inet.benchmark == BENCHMARK
    assert list_corruptions(suite=suite) == ["gaussian_noise", "toy_fade"]

    x = _images()
    y = corrupt(x, "toy_fade", 4, suite=suite, seed=3)
    # severity 4 of its cifar10_c table (0.2): within one 8-bit level of the formula, whatever the quantiser
    expected = (x.double() * 0.8 + 0.1 * 255.0).clamp(0, 255)
    assert float((y.double() - expected).abs().max()) <= 1.0
    explicit = {
        "name": "explicit",
        "base": "cifar10-c",
        "held_out": ["toy_fade"],
        "params": {"toy_fade": [0.2] * 5},
    }
    assert torch.equal(y, corrupt(x, "toy_fade", 1, suite=explicit, seed=3))
    assert not torch.equal(y, corrupt(x, "toy_fade", 1, suite=suite, seed=3))

    # the built-in suites and the canonical lists are untouched
    for name in list_suites():
        assert "toy_fade" not in get_suite(name).params
    with pytest.raises(ValueError, match="unknown corruption 'toy_fade' for suite 'cifar10-c'"):
        corrupt(x, "toy_fade", 1, suite="cifar10-c")
    assert "toy_fade" not in ALL_CORRUPTIONS


def test_unregistering_removes_it_everywhere():
    @CORRUPTIONS.register(
        "toy_gone", category="noise", benchmark=True, imagenet_c=(1,) * 5, cifar10_c=(1,) * 5
    )
    def toy_gone(x, param, ctx):
        return x

    assert "toy_gone" in list_corruptions(benchmark=True)
    CORRUPTIONS.unregister("toy_gone")
    assert "toy_gone" not in list_corruptions()
    with pytest.raises(ValueError, match="lists corruptions without parameters: toy_gone"):
        load_suite({"name": "x", "base": "cifar10-c", "corruptions": ["toy_gone"]})


def _fn(x, param, ctx):
    return x


ENTRY = dict(category="blur", benchmark=False, imagenet_c=(1, 2, 3, 4, 5), cifar10_c=(1, 2, 3, 4, 5))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"category": "sky"}, "unknown category 'sky'; valid: noise, blur, weather, digital"),
        ({"benchmark": 1}, "benchmark must be True or False"),
        ({"colour": "red"}, "unknown entry keys colour; valid: category, benchmark, imagenet_c"),
        ({"cifar10_c": None}, "cifar10_c needs a list of 5 parameters"),
        ({"imagenet_c": (1, 2, 3, 4)}, "table imagenet_c needs a list of 5 parameters"),
        ({"arity": 2}, "table imagenet_c severity 1: expected a list of numbers"),
        ({"arity": 2, "imagenet_c": ((1, 2),) * 4 + ((1,),)}, "severity 5: expected 2 numbers, got 1"),
        ({"arity": 0}, "arity must be None, a positive integer or -1"),
        ({"order": 0}, "order must be a positive integer"),
        ({"reference": 3}, "reference must be a function name"),
        ({"cifar10_c": (1, 2, float("nan"), 4, 5)}, "severity 3: expected a finite number"),
    ],
)
def test_a_malformed_entry_fails_when_registered(change, message):
    entry = {**ENTRY, **change}
    with pytest.raises(ValueError, match=re.escape(message)):
        CORRUPTIONS.add("toy_bad", _fn, **entry)
    assert "toy_bad" not in CORRUPTIONS


def test_an_entry_needs_both_tables():
    with pytest.raises(ValueError, match="the entry needs cifar10_c"):
        CORRUPTIONS.add("toy_bad", _fn, category="blur", benchmark=True, imagenet_c=(1, 2, 3, 4, 5))
    assert "toy_bad" not in CORRUPTIONS


def test_the_imagecorruptions_table_falls_back_to_imagenet_c():
    assert CORRUPTIONS.table("gaussian_noise", "imagecorruptions") == CORRUPTIONS.table(
        "gaussian_noise", "imagenet-c"
    )
    assert CORRUPTIONS.table("elastic_transform", "imagecorruptions")[0] == (12.5, 0.01, 0.005)
    with pytest.raises(
        ValueError, match="no severity table for suite 'svhn-c'; valid: imagenet-c, cifar10-c"
    ):
        CORRUPTIONS.table("gaussian_noise", "svhn-c")


def test_every_built_in_corruption_names_its_reference_function():
    from corruptions.reference import REFERENCE_CORRUPTIONS

    assert REFERENCE_CORRUPTIONS == ALL_CORRUPTIONS
    assert all(CORRUPTIONS.meta(n)["reference"] == n for n in ALL_CORRUPTIONS)
