"""The built-in suite kinds, registered by importing them here: corruption suites (:mod:`.corruption`),
perturbation suites (:mod:`.perturbation`), probes (:mod:`.probe`) and adversarial attacks (:mod:`.adversarial`). A new kind is one module that builds a
:class:`~robustbench_lift.evaluation.suite_kinds.SuiteKind` and calls ``register_suite_kind``, plus one import line
here (or, for a third-party package, an import of its own module before ``evaluate`` runs).
"""

from __future__ import annotations

from . import adversarial, corruption, perturbation, probe

__all__ = ["adversarial", "corruption", "perturbation", "probe"]
