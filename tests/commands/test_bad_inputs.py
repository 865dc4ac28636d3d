"""``scripts/bad_inputs.py``: every bad input exits with its documented code and a clear message, and
``docs/bad_inputs.md`` is what the CLI says today."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FMNIST = "/usr/share/datasets/fashion-mnist"


def _rows(page: str) -> list[list[str]]:
    rows = []
    for line in page.splitlines():
        if line.startswith("| ") and not line.startswith("| input "):
            cells = [c.strip() for c in line.strip().strip("|").replace("\\|", "\0").split("|")]
            rows.append([c.replace("\0", "|") for c in cells])
    return rows


@pytest.mark.skipif(not os.path.isdir(FMNIST), reason="Fashion-MNIST is not installed")
def test_bad_input_table_is_complete_clear_and_current(tmp_path):
    out = tmp_path / "bad_inputs.md"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bad_inputs.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr  # the script checks each case's exit code against its list
    page = out.read_text(encoding="utf-8")
    rows = _rows(page)
    assert len(rows) >= 40
    for argv, code, message in rows:
        assert code in ("1", "2"), (argv, code)
        assert message and "Traceback" not in message, argv
        assert "rbl-bad-inputs-" not in message and str(tmp_path) not in message  # no temporary paths
    assert page == (ROOT / "docs" / "bad_inputs.md").read_text(encoding="utf-8"), (
        "docs/bad_inputs.md is stale: run python scripts/bad_inputs.py"
    )


def test_problems_flags_wrong_codes_and_tracebacks():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import bad_inputs
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    ok = bad_inputs.Case("train")
    assert bad_inputs.problems([(ok, 2, "robustbench-lift train: error: x")]) == []
    assert bad_inputs.problems([(ok, 1, "error: x")])
    assert bad_inputs.problems([(ok, 2, "Traceback (most recent call last): ...")])
    assert bad_inputs.problems([(ok, 2, "")])
