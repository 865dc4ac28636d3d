#!/usr/bin/env python3
"""Run a list of bad inputs through the CLI and write ``docs/bad_inputs.md``: input, exit code, message.

Usage::

    python scripts/bad_inputs.py                 # rewrite docs/bad_inputs.md
    python scripts/bad_inputs.py --out FILE      # write the table elsewhere
    python scripts/bad_inputs.py --check         # exit 1 when docs/bad_inputs.md is not what the CLI says today

Every case runs ``robustbench_lift.cli.main`` in this process (much faster than one process per case) inside a
temporary folder holding the tiny files it needs: checkpoints (good, garbage, a malicious pickle, one that does not
fit its architecture), a finished run, a killed run and a baseline. Paths in the messages are written relative to
that folder and CUDA / MPS count as absent, so the table is the same on every machine. The script exits 1 when a case
exits with another code than the one listed for it, prints a traceback, or prints no message.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import logging
import os
import shutil
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

DOC = ROOT / "docs" / "bad_inputs.md"

#: Cheap settings for the evaluate cases that name a valid checkpoint (in case a refusal comes late).
TINY = "--limit 8 --batch-size 8 --n-boot 0 --no-progress --corruptions contrast --severities 1"
TRAIN = "train --arch convnet --pool max --dataset fashion-mnist --epochs 1 --out m.safetensors"
CORRUPT = "corrupt --dataset fashion-mnist --out fm-c --limit 4"


@dataclass(frozen=True)
class Case:
    """One bad input: the command line (after ``robustbench-lift``) and the exit code it must give."""

    argv: str
    code: int = 2


CASES: tuple[Case, ...] = (
    # the command line itself
    Case(""),
    Case("frobnicate"),
    Case("--bogus"),
    Case("evaluate ok.safetensors --out r --bogus"),
    # evaluate: options
    Case("evaluate"),
    Case("evaluate ok.safetensors"),
    Case(f"evaluate ok.safetensors --out r --suite no-such-suite {TINY}"),
    Case(f"evaluate ok.safetensors --out r --probe shfit {TINY}"),
    Case("evaluate ok.safetensors --out r --corruptions Gaussian-Noise --limit 8 --n-boot 0 --no-progress"),
    Case("evaluate ok.safetensors --out r --severities 5-1"),
    Case("evaluate ok.safetensors --out r --severities 0,6"),
    Case("evaluate ok.safetensors --out r --severities high"),
    Case("evaluate ok.safetensors --out r --device tpu9"),
    Case("evaluate ok.safetensors --out r --device cuda"),
    Case("evaluate ok.safetensors --out r --device cuda:x"),
    Case("evaluate ok.safetensors --out r --device mps"),
    Case("evaluate ok.safetensors --out r --batch-size 0"),
    Case("evaluate ok.safetensors --out r --batch-size -3"),
    Case("evaluate ok.safetensors --out r --limit 0"),
    Case("evaluate ok.safetensors --out r --limit ten"),
    Case("evaluate ok.safetensors --out r --workers -1"),
    Case("evaluate ok.safetensors --out r --n-boot many"),
    Case("evaluate ok.safetensors --out r --amp fp8"),
    Case("evaluate ok.safetensors --out r --mean 0.5,x"),
    Case("evaluate ok.safetensors --out r --backend numpy"),
    Case("evaluate ok.safetensors --out r --executor slurm"),
    Case("evaluate ok.safetensors --out r --ray-address auto"),
    Case("evaluate ok.safetensors --out r --eps 8/255"),
    Case("evaluate ok.safetensors --out r --suite pgd-linf --eps 8/0"),
    Case("evaluate ok.safetensors --out r --name a --name b"),
    Case(f"evaluate ok.safetensors --out r --baseline nobody {TINY}"),
    Case(f"evaluate ok.safetensors --out r --dataset no-such-set {TINY}"),
    Case(f"evaluate ok.safetensors --out r --dataset cifar10:missing-dir {TINY}"),
    Case(f"evaluate ok.safetensors --out ../escape {TINY}"),
    Case(f"evaluate ok.safetensors --out bad@name {TINY}"),
    Case(f"evaluate ok.safetensors --out ok-run --seed 7 {TINY}"),
    # evaluate: checkpoints
    Case(f"evaluate missing.safetensors --out r {TINY}"),
    Case(f"evaluate garbage.safetensors --out r {TINY}"),
    Case(f"evaluate truncated.pt --arch convnet --out r {TINY}"),
    Case(f"evaluate evil.pt --out r {TINY}"),
    Case(f"evaluate state.pth --out r {TINY}"),
    Case(f"evaluate state.pth --arch no-such-arch --out r {TINY}"),
    Case(f"evaluate state.pth --arch convnet --num-classes 10 --in-channels 1 --out r {TINY}"),
    Case(f"evaluate ok.safetensors state.pth --arch convnet --arch convnet --arch convnet --out r {TINY}"),
    Case(f"evaluate state.pth --arch timm:resnet_18 --out r {TINY}"),
    Case(f"evaluate state.pth --arch torchvision:resnet_18 --out r {TINY}"),
    Case(f"evaluate folder.safetensors --out r {TINY}"),
    # report
    Case("report"),
    Case("report missing-run --out rep --no-gallery"),
    Case("report killed-run --out rep --no-gallery"),
    Case("report ok-run --out rep --no-gallery --formats gif"),
    Case("report ok-run --out rep --baseline nobody --no-gallery"),
    # check
    Case("check ok-run"),
    Case("check ok-run --baseline missing.json"),
    Case("check ok-run --baseline garbage.json"),
    Case("check missing-run --baseline base.json"),
    Case("check killed-run --baseline base.json"),
    Case("check ok-run --baseline base.json --max-drop clean_acc"),
    Case("check ok-run --baseline base.json --max-drop no_such_metric=1"),
    Case("check ok-run --baseline base.json --max-drop clean_acc=lots"),
    Case("check ok-run --baseline base.json --config missing.toml"),
    # compare
    Case("compare ok-run"),
    Case("compare ok-run missing-run"),
    Case("compare ok-run killed-run"),
    Case("compare ok-run ok-run --n-boot 3"),
    # train
    Case("train"),
    Case("train --arch no-such-arch --pool max --dataset fashion-mnist --epochs 1 --out m.safetensors"),
    Case("train --arch convnet --pool maxx --dataset fashion-mnist --epochs 1 --out m.safetensors"),
    Case("train --arch convnet --pool max --dataset fashion-mnist --epochs 0 --out m.safetensors"),
    Case("train --arch convnet --pool max --dataset fashion-mnist --epochs 1 --out m.pt"),
    Case(f"{TRAIN} --seeds 1,1"),
    Case(f"{TRAIN} --model-opt stem"),
    Case(f"{TRAIN} --lr -1"),
    Case(f"{TRAIN} --optimizer adam"),
    Case(f"{TRAIN} --device cuda"),
    Case("train --arch convnet --pool max --dataset no-such-set --epochs 1 --out m.safetensors"),
    # corrupt
    Case("corrupt --out fm-c"),
    Case(f"{CORRUPT} --corruptions Gaussian-Noise"),
    Case(f"{CORRUPT} --suite no-such-suite"),
    Case(f"{CORRUPT} --severities 1,3"),
    Case(f"{CORRUPT} --severities 9"),
    Case("corrupt --dataset fashion-mnist --out fm-c --limit 0"),
    Case("corrupt --dataset no-such-set --out fm-c"),
    Case("corrupt --dataset cifar10-c:missing-dir --out fm-c"),
    # demo
    Case("demo --quick --profile ci"),
    Case("demo --profile huge"),
    Case("demo --epochs 0"),
    Case("demo --device tpu9"),
)


@contextlib.contextmanager
def _no_accelerators():
    """CUDA and MPS count as absent, so that the device cases read the same on every machine."""
    import torch

    def absent(original, value):
        # functools.wraps keeps __wrapped__, which torch's own modules (e.g. torch._dynamo, imported by timm)
        # read off these functions.
        return functools.wraps(original)(lambda: value)

    saved = torch.cuda.is_available, torch.cuda.device_count
    torch.cuda.is_available, torch.cuda.device_count = absent(saved[0], False), absent(saved[1], 0)
    mps = getattr(torch.backends, "mps", None)
    saved_mps = mps.is_available if mps is not None else None
    if mps is not None:
        mps.is_available = absent(saved_mps, False)
    try:
        yield
    finally:
        torch.cuda.is_available, torch.cuda.device_count = saved
        if mps is not None:
            mps.is_available = saved_mps


def _call(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` with stdout/stderr captured: (exit code, stdout, stderr)."""
    from robustbench_lift.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        except BaseException:  # a crash is what this table exists to catch: record it, do not stop
            traceback.print_exc()
            code = -1
    return int(code), out.getvalue(), err.getvalue()


def _make_files(folder: Path) -> None:
    """The tiny inputs the cases name, in ``folder`` (the current directory while the cases run)."""
    import torch

    from robustbench_lift.checkpoint import save_checkpoint
    from robustbench_lift.models import build_model

    torch.manual_seed(0)
    save_checkpoint(
        folder / "ok.safetensors", build_model("convnet", pool="max", num_classes=10, in_channels=1)
    )
    (folder / "garbage.safetensors").write_bytes(b"these bytes are not a checkpoint")
    (folder / "garbage.json").write_text("{not json", encoding="utf-8")
    (folder / "folder.safetensors").mkdir()
    torch.save(
        build_model("convnet", pool="max", num_classes=7, in_channels=3).state_dict(), folder / "state.pth"
    )
    torch.save(_Evil(), folder / "evil.pt")
    whole = (folder / "state.pth").read_bytes()
    (folder / "truncated.pt").write_bytes(whole[: len(whole) // 2])  # a torch.save file cut short
    tiny = TINY.split()
    for argv in (
        ["evaluate", "ok.safetensors", "--out", "ok-run", *tiny],
        ["check", "ok-run", "--baseline", "base.json", "--update-baseline", "--max-drop", "clean_acc=1.0"],
    ):
        code, _, err = _call(argv)
        if code != 0:
            raise RuntimeError(f"setting up the bad-input cases failed: {' '.join(argv)}: {err}")
    killed = folder / "reports" / "killed-run"
    shutil.copytree(folder / "reports" / "ok-run", killed)
    for name in ("results.csv", "seeds.csv"):  # killed before the results were written
        (killed / name).unlink(missing_ok=True)


class _Evil:
    """Unpickling this runs a shell command: the checkpoint loader must refuse it without ``--trust-pickle``."""

    def __reduce__(self):
        return (os.system, ("echo this checkpoint ran code",))


def _message(stderr: str, folder: Path) -> str:
    """The error lines of ``stderr`` (every line when none says error), on one line, paths made relative."""
    text = stderr.replace(str(folder) + os.sep, "").replace(str(folder), ".")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line or line.startswith("Traceback")]
    if errors:
        first = lines.index(errors[0])
        lines = lines[first:]  # the error and what follows it (the hint lines of a multi-line message)
    elif lines and lines[0].startswith("usage:"):
        lines = lines[:1]
    return " ".join(lines)


def run_cases(cases: tuple[Case, ...] = CASES) -> list[tuple[Case, int, str]]:
    """Run every case in a fresh temporary folder: ``(case, exit code, message)``."""
    logging.basicConfig(handlers=[logging.NullHandler()])  # the CLI's log lines are not part of the table
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="rbl-bad-inputs-") as tmp, _no_accelerators():
        folder = Path(tmp).resolve()
        os.chdir(folder)
        try:
            _make_files(folder)
            results = []
            for case in cases:
                code, _, err = _call(case.argv.split())
                results.append((case, code, _message(err, folder)))
        finally:
            os.chdir(cwd)
    return results


def problems(results: list[tuple[Case, int, str]]) -> list[str]:
    """What is wrong with the results: an unexpected exit code, a traceback, no message."""
    out = []
    for case, code, message in results:
        if code != case.code:
            out.append(f"{case.argv!r}: exit code {code}, expected {case.code}: {message}")
        if "Traceback" in message or not message:
            out.append(f"{case.argv!r}: no clear message: {message!r}")
    return out


def render(results: list[tuple[Case, int, str]]) -> str:
    """The Markdown page: a short explanation and the table."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("`", "'")

    lines = [
        "# Bad inputs and what the CLI says",
        "",
        "Generated by `python scripts/bad_inputs.py` (a test checks that this page is what the CLI says today).",
        "Each row is one command line after `robustbench-lift`, run in a folder holding tiny files:",
        "`ok.safetensors` (a valid ConvNet), `garbage.*` (random bytes), `evil.pt` (a pickle that runs a shell",
        "command when loaded), `state.pth` (a bare state_dict of a 3-channel, 7-class ConvNet), `truncated.pt` (the",
        "first half of it), a finished run",
        "`ok-run`, a run killed before writing its results `killed-run`, and a baseline `base.json`. CUDA and MPS",
        "count as absent. Exit codes: 0 ok, 1 check failed, 2 usage or input error.",
        "",
        "| input | exit code | message |",
        "|---|---|---|",
    ]
    for case, code, message in results:
        shown = f"`{cell(case.argv)}`" if case.argv else "(no arguments)"
        lines.append(f"| {shown} | {code} | {cell(message)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=DOC, help="where to write the table (default: %(default)s)"
    )
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    args = parser.parse_args(argv)
    results = run_cases()
    page = render(results)
    bad = problems(results)
    for line in bad:
        print(f"bad_inputs: {line}", file=sys.stderr)
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        if current != page:
            print(f"bad_inputs: {args.out} is stale; run python scripts/bad_inputs.py", file=sys.stderr)
            return 1
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(page, encoding="utf-8")
        print(f"wrote {args.out} ({len(results)} cases)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
