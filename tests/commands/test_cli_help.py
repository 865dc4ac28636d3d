"""``--help`` is cheap (no torch import) and every option of every command says what it does, once."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from robustbench_lift.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_help_of_every_command_imports_no_torch():
    code = (
        "import sys, argparse\n"
        "from robustbench_lift.cli import build_parser\n"
        "p = build_parser()\n"
        "p.format_help()\n"
        "(sub,) = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]\n"
        "for name, sp in sub.choices.items():\n"
        "    sp.format_help()\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'timm', 'pandas', 'matplotlib') if m in sys.modules)\n"
        "print(','.join(heavy) or 'none')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "none"


@pytest.mark.parametrize(
    "argv", [["--help"], ["evaluate", "--help"], ["train", "--help"], ["demo", "--help"]]
)
def test_cli_help_runs_without_torch(argv):
    code = (
        "import sys\n"
        "from robustbench_lift.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "print('torch' in sys.modules, file=sys.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "usage: robustbench-lift" in out.stdout
    assert out.stderr.strip() == "False"


@pytest.mark.parametrize("name", sorted(_subparsers()))
def test_every_option_has_one_clean_help_text(name):
    parser = _subparsers()[name]
    formatter = parser._get_formatter()
    for action in parser._actions:
        label = "/".join(action.option_strings) or action.dest
        assert action.help and action.help is not argparse.SUPPRESS, f"{name} {label} has no help text"
        text = formatter._expand_help(action)
        assert "%%" not in text, f"{name} {label}: {text!r}"
        assert len(re.findall(r"default", text, flags=re.IGNORECASE)) <= 1, f"{name} {label}: {text!r}"
        if action.nargs == 0:  # flags: --x / --no-x
            assert not re.search(r"default: (True|False)", text), f"{name} {label}: {text!r}"
    rendered = parser.format_help()
    assert "%%" not in rendered
    assert "(default: None)" not in rendered


def test_the_formatter_appends_a_default_only_where_it_says_something():
    from robustbench_lift.commands._args import HelpFormatter

    p = argparse.ArgumentParser(formatter_class=HelpFormatter)
    p.add_argument("--a", type=int, default=10, help="A")
    p.add_argument("--b", type=int, default=10, help="B (default 10)")
    p.add_argument("--c", default=None, help="C")
    p.add_argument("--no-d", dest="d", action="store_false", help="D")
    text = " ".join(p.format_help().split())
    assert "A (default: 10)" in text and "B (default 10) --c" in text
    assert "C --no-d" in text and text.endswith("D")


def test_hard_coded_choices_match_the_library():
    from robustbench_lift.commands import demo, train
    from robustbench_lift.demo import PROFILES
    from robustbench_lift.train import OPTIMIZERS, VAL_SPLITS

    assert demo.PROFILE_NAMES == tuple(PROFILES)
    assert train.OPTIMIZERS == OPTIMIZERS and train.VAL_SPLITS == VAL_SPLITS


def test_train_arch_and_pool_names_are_checked_against_the_registries(capsys):
    from robustbench_lift.cli import main
    from robustbench_lift.layers.pools import list_pools

    with pytest.raises(SystemExit) as exc:
        main(
            ["train", "--arch", "convnet", "--pool", "maxx", "--dataset", "d", "--epochs", "1", "--out", "x"]
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown pooling 'maxx'" in err and ", ".join(list_pools()) in err
    with pytest.raises(SystemExit):
        main(
            ["train", "--arch", "convnett", "--pool", "max", "--dataset", "d", "--epochs", "1", "--out", "x"]
        )
    assert "unknown architecture 'convnett'; valid: " in capsys.readouterr().err
