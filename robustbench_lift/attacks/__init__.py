"""Adversarial attacks and the four adversarial suites: ``pgd-linf``, ``pgd-l2``, ``autoattack-linf``,
``autoattack-l2``.

A suite is an attack plus its settings; each eps is one cell per model (see
:mod:`robustbench_lift.evaluation.kinds.adversarial`). Eps values are on the [0, 1] pixel scale, before the model's
normalisation, and may be written as fractions (``8/255``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from fractions import Fraction

from .pgd import NORMS, PGDResult, default_step_size, pgd_attack

__all__ = [
    "ADVERSARIAL_SUITES",
    "DEFAULT_EPS",
    "AdversarialSuite",
    "NORMS",
    "PGDResult",
    "adversarial_suite",
    "default_step_size",
    "eps_token",
    "parse_eps",
    "pgd_attack",
    "suite_from_params",
]

#: suite name -> (method, norm)
ADVERSARIAL_SUITES: dict[str, tuple[str, str]] = {
    "pgd-linf": ("pgd", "linf"),
    "pgd-l2": ("pgd", "l2"),
    "autoattack-linf": ("autoattack", "linf"),
    "autoattack-l2": ("autoattack", "l2"),
}
#: eps evaluated when none are given (RobustBench's CIFAR-10 radii, with 0 = clean and a smaller one).
DEFAULT_EPS: dict[str, tuple[str, ...]] = {"linf": ("0", "2/255", "8/255"), "l2": ("0", "0.25", "0.5")}


def parse_eps(text: str | float) -> float:
    """``"8/255"``, ``"0.03"`` or a number -> float eps >= 0 (``ValueError`` otherwise)."""
    if isinstance(text, bool):
        raise ValueError(f"invalid eps {text!r}")
    try:
        value = float(Fraction(str(text).strip()))
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"invalid eps {text!r}: give a number or a fraction such as 8/255") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {text!r}")
    return value


def eps_token(text: str) -> str:
    """A file-name-safe token for an eps as given (``8/255`` -> ``eps8over255``), used in cell keys."""
    token = "eps" + str(text).strip().replace("/", "over")
    if not re.fullmatch(r"[A-Za-z0-9._+-]{1,128}", token):
        raise ValueError(f"invalid eps {text!r}")
    return token


@dataclass(frozen=True)
class AdversarialSuite:
    """An attack and its settings.

    Args:
        name: one of :data:`ADVERSARIAL_SUITES`.
        eps: the radii as given (strings, kept for labels), evaluated in ascending order of value.
        steps: PGD iterations (default 10); step_size: PGD step (None: ``2.5 * eps / steps``).
        restarts: PGD random restarts (default 1).
        version: AutoAttack version (``"standard"``).
    """

    name: str
    eps: tuple[str, ...]
    steps: int = 10
    step_size: float | None = None
    restarts: int = 1
    version: str = "standard"

    @property
    def method(self) -> str:
        return ADVERSARIAL_SUITES[self.name][0]

    @property
    def norm(self) -> str:
        return ADVERSARIAL_SUITES[self.name][1]

    def params(self) -> dict[str, object]:
        """The settings that make a stored cell reusable (the eps list is not one: eps values are cells)."""
        if self.method == "pgd":
            return {
                "attack": "pgd",
                "norm": self.norm,
                "steps": self.steps,
                "step_size": "2.5*eps/steps" if self.step_size is None else self.step_size,
                "restarts": self.restarts,
                "random_start": True,
                "loss": "cross-entropy",
            }
        from .autoattack import CHUNK, autoattack_version

        return {
            "attack": "autoattack",
            "norm": self.norm,
            "version": self.version,
            "chunk": CHUNK,
            "library": autoattack_version(),
        }

    def protocol(self, eps_text: str, params: dict[str, object] | None = None) -> str:
        """How a row of this suite at ``eps_text`` was produced (``params``: the stored settings, default now's)."""
        norm = "L-inf" if self.norm == "linf" else "L2"
        if self.method == "pgd":
            step = "2.5*eps/steps" if self.step_size is None else f"{self.step_size:g}"
            return (
                f"PGD (Madry et al.), {norm}, eps={eps_text} on [0,1] pixels before normalisation, "
                f"{self.steps} steps of {step}, random start, {self.restarts} restart(s), cross-entropy, "
                "seeded per image; robust error = misclassified clean or at any iterate"
            )
        params = self.params() if params is None else params
        return (
            f"AutoAttack {self.version} (APGD-CE, APGD-T, FAB-T, Square), {norm}, eps={eps_text} on [0,1] pixels "
            f"before normalisation, {params['library']}, chunks of {params['chunk']} images seeded by the run seed "
            "and the chunk's first id; robust error = misclassified clean or adversarial"
        )


def suite_from_params(name: str, params: dict[str, object]) -> AdversarialSuite:
    """The suite (without its eps list) described by the settings a run's manifest stored."""
    if name not in ADVERSARIAL_SUITES:
        raise ValueError(f"unknown adversarial suite {name!r}; valid: {', '.join(ADVERSARIAL_SUITES)}")
    step = params.get("step_size")
    return AdversarialSuite(
        name=name,
        eps=(),
        steps=int(params.get("steps", 10)),
        step_size=None if step in (None, "2.5*eps/steps") else float(step),
        restarts=int(params.get("restarts", 1)),
        version=str(params.get("version", "standard")),
    )


def adversarial_suite(
    name: str,
    eps: str | list[str] | tuple[str, ...] | None = None,
    *,
    steps: int | None = None,
    step_size: float | None = None,
    restarts: int | None = None,
) -> AdversarialSuite:
    """Build a suite from its name and settings (eps: a comma list or a sequence; default :data:`DEFAULT_EPS`)."""
    if name not in ADVERSARIAL_SUITES:
        raise ValueError(f"unknown adversarial suite {name!r}; valid: {', '.join(ADVERSARIAL_SUITES)}")
    norm = ADVERSARIAL_SUITES[name][1]
    if eps is None:
        texts = list(DEFAULT_EPS[norm])
    elif isinstance(eps, str):
        texts = [t.strip() for t in eps.split(",") if t.strip()]
    else:
        texts = [str(t).strip() for t in eps]
    if not texts:
        raise ValueError("give at least one eps")
    values = [parse_eps(t) for t in texts]
    tokens = [eps_token(t) for t in texts]
    if len(set(tokens)) != len(tokens):
        raise ValueError(f"eps given twice: {texts}")
    order = sorted(range(len(texts)), key=lambda i: values[i])
    suite = AdversarialSuite(name=name, eps=tuple(texts[i] for i in order))
    changes: dict[str, object] = {}
    if steps is not None:
        if isinstance(steps, bool) or int(steps) < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        changes["steps"] = int(steps)
    if restarts is not None:
        if isinstance(restarts, bool) or int(restarts) < 1:
            raise ValueError(f"restarts must be a positive integer, got {restarts!r}")
        changes["restarts"] = int(restarts)
    if step_size is not None:
        if not float(step_size) > 0:
            raise ValueError(f"step_size must be > 0, got {step_size!r}")
        changes["step_size"] = float(step_size)
    return replace(suite, **changes) if changes else suite
