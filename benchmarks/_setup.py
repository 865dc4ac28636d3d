"""Import first in every benchmark script: makes the project importable when a script is run directly.

Run as ``python benchmarks/NAME.py``, this folder comes first on ``sys.path``, where ``benchmarks/corruptions.py``
would shadow the ``corruptions`` package (and Ray copies the driver's path to its workers). Modules are looked up
from the project root instead.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
