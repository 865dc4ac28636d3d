import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_"))


def test_every_benchmark_is_listed():
    assert SCRIPTS == [
        "adversarial.py",
        "corruptions.py",
        "evaluate.py",
        "parity.py",
        "pooling.py",
        "scaling.py",
    ]


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_script_starts(script):
    # run as `python benchmarks/NAME.py`: the script's folder comes first on sys.path, where
    # benchmarks/corruptions.py would shadow the corruptions package unless the script guards against it
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout
