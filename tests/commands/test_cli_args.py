import argparse

import pytest

from robustbench_lift.cli import build_parser, main
from robustbench_lift.commands._args import (
    non_negative_int,
    parse_floats,
    parse_ints,
    parse_list,
    positive_int,
)


def test_argument_types():
    assert parse_list(" fog, snow ") == ["fog", "snow"]
    assert parse_ints("1,3-5") == [1, 3, 4, 5]
    assert parse_floats("0.5,1") == [0.5, 1.0]
    assert positive_int("3") == 3 and non_negative_int("0") == 0
    for fn, bad in ((parse_list, "a,,b"), (parse_ints, "1,x"), (parse_floats, "a"), (positive_int, "0"),
                    (non_negative_int, "-1"), (positive_int, "1.5")):  # fmt: skip
        with pytest.raises(argparse.ArgumentTypeError, match=repr(bad)):
            fn(bad)


def test_every_command_is_discovered_and_bad_values_exit_2(capsys):
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {"check", "compare", "corrupt", "demo", "evaluate", "report", "train"}
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "m.safetensors", "--out", "r", "--severities", "1,x"])
    assert exc.value.code == 2
    assert "expected integers like 1,3,5 or 1-5, got '1,x'" in capsys.readouterr().err


def test_every_command_module_is_listed():
    # commands are registered by explicit import (no module discovery): a new module needs its line in COMMANDS
    from pathlib import Path

    import robustbench_lift.commands as commands
    from robustbench_lift.cli import build_parser

    files = {p.stem for p in Path(commands.__file__).parent.glob("*.py") if not p.stem.startswith("_")}
    assert {m.__name__.rsplit(".", 1)[1] for m in commands.COMMANDS} == files
    choices = build_parser()._subparsers._group_actions[0].choices
    assert set(choices) == files
