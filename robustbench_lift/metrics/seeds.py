"""Seed-aware statistics: a metric per seed group, with a two-level bootstrap over seeds and images.

A seed group is several models trained with one recipe and different seeds (:mod:`robustbench_lift.evaluation.groups`).
The evaluator gives every model's metric as a ``(1 + B,)`` vector from the one :class:`~.bootstrap.Resampler` of its
suite: column 0 the value on all images, column b the value under image resample b, the SAME image resample for every
model (all models see the same images and corruption draws). The second level resamples seeds: for resample b, a
group's value is the mean over ``k`` seeds drawn with replacement from its ``k`` seeds, each seed's column b. So one
column mixes both sources of chance, and the percentile interval of the columns covers both:

* group value = mean over its seeds of the per-seed values (column 0), with the per-seed values alongside;
* difference of two groups = the same two-level resample, the image draw shared (paired), each group's seed draw its
  own (seeds of different groups are not paired); "significant" only when the interval excludes 0;
* with one seed the seed level does nothing: the interval covers image sampling only, and :attr:`SeedInterval.covers`
  says so (the wording reports use: :data:`IMAGES_ONLY`).

Seed draws come from ``numpy_generator(seed, "seeds", group, k, B)``: deterministic, and the same for a group's own
interval and for every difference it takes part in. docs/metrics.md has the definitions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from corruptions.rng import numpy_generator

from .bootstrap import interval

__all__ = [
    "IMAGES_ONLY",
    "SEEDS_AND_IMAGES",
    "SEED_TABLE_COLUMNS",
    "SeedInterval",
    "group_difference",
    "group_interval",
    "seed_resample",
    "seed_table",
]

#: What an interval covers (the ``interval`` column of the seed table).
SEEDS_AND_IMAGES = "seeds and images"
IMAGES_ONLY = "images only (one seed per group: no claim about poolings in general)"

#: Columns of the seed table (``seeds.csv`` of a run): one row per (group, metric) and per (group - baseline
#: group, metric).
SEED_TABLE_COLUMNS: tuple[str, ...] = (
    "group",
    "compared_to",  # empty for a group's own value; the baseline group for a difference (group - compared_to)
    "pooling",
    "arch",
    "suite",
    "corruption",
    "severity",
    "metric",
    "value",  # mean over the group's seeds (a difference: of the two means)
    "ci_low",
    "ci_high",
    "significant",  # differences only: the interval excludes 0
    "n_seeds",
    "seeds",  # the training seeds, ";"-separated ("" for models that record none)
    "per_seed",  # the per-seed values, ";"-separated, in the order of ``seeds``
    "n",  # images behind each value
    "interval",  # SEEDS_AND_IMAGES or IMAGES_ONLY
    "protocol",
)


@dataclass(frozen=True)
class SeedInterval:
    """A group's value (or a difference of two groups) with its two-level bootstrap interval.

    Attributes:
        estimate: mean over seeds of the per-seed values (a difference: mean of group A minus mean of group B).
        low, high: 95 % (1 - alpha) percentile interval; NaN without resamples.
        per_seed: the per-seed values (a difference: group A's).
        n_seeds: seeds behind the value (a difference: the smaller of the two groups).
        covers: :data:`SEEDS_AND_IMAGES`, or :data:`IMAGES_ONLY` when a group has one seed.
    """

    estimate: float
    low: float
    high: float
    per_seed: tuple[float, ...]
    n_seeds: int
    n_boot: int
    covers: str

    @property
    def significant(self) -> bool:
        """The interval excludes 0 (meaningful for differences); False without an interval."""
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return False
        return not (self.low <= 0.0 <= self.high)


def _vectors(vectors: Any) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2 or v.shape[0] == 0 or v.shape[1] == 0:
        raise ValueError(
            f"expected per-seed bootstrap vectors of shape (seeds, 1 + B), got shape {np.shape(vectors)}"
        )
    return v


def seed_resample(vectors: Any, seed: int, *keys: Any) -> np.ndarray:
    """The two-level bootstrap vector ``(1 + B,)`` of a group from its per-seed vectors ``(k, 1 + B)``.

    Column 0 is the mean over seeds of the point estimates; column b the mean over ``k`` seeds drawn with
    replacement (from ``numpy_generator(seed, "seeds", *keys, k, B)``) of their column b. With ``k == 1`` the
    vector is returned unchanged (image resampling only).
    """
    v = _vectors(vectors)
    k, width = v.shape
    out = np.empty(width)
    out[0] = v[:, 0].mean()
    if width == 1:
        return out
    if k == 1:
        return v[0].copy()
    rng = numpy_generator(seed, "seeds", *keys, k, width - 1)
    picks = rng.integers(0, k, size=(width - 1, k))  # (B, k): the seeds of each resample
    out[1:] = v[picks, np.arange(1, width)[:, None]].mean(axis=1)
    return out


def group_interval(vectors: Any, *, seed: int, key: Any, alpha: float = 0.05) -> SeedInterval:
    """A group's mean over seeds with its two-level interval (``key`` names the group for the seed draw)."""
    v = _vectors(vectors)
    est, lo, hi = interval(seed_resample(v, seed, key), alpha)
    k = v.shape[0]
    return SeedInterval(
        est,
        lo,
        hi,
        tuple(float(x) for x in v[:, 0]),
        k,
        v.shape[1] - 1,
        SEEDS_AND_IMAGES if k > 1 else IMAGES_ONLY,
    )


def group_difference(
    vectors_a: Any, vectors_b: Any, *, seed: int, key_a: Any, key_b: Any, alpha: float = 0.05
) -> SeedInterval:
    """Group A minus group B: paired over images (same columns), each group's seeds resampled on their own."""
    a, b = _vectors(vectors_a), _vectors(vectors_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"the groups' vectors come from different resamples ({a.shape[1] - 1} vs {b.shape[1] - 1}): "
            "a paired difference needs the same image resamples"
        )
    with np.errstate(invalid="ignore"):  # inf - inf (an undefined ratio in both groups) is NaN: dropped below
        diff = seed_resample(a, seed, key_a) - seed_resample(b, seed, key_b)
    est, lo, hi = interval(diff, alpha)
    k = min(a.shape[0], b.shape[0])
    return SeedInterval(
        est,
        lo,
        hi,
        tuple(float(x) for x in a[:, 0]),
        k,
        a.shape[1] - 1,
        SEEDS_AND_IMAGES if k > 1 else IMAGES_ONLY,
    )


def _joined(values: Sequence[Any]) -> str:
    return ";".join(
        "" if v is None or v == "" else (f"{v:.6g}" if isinstance(v, float) else str(v)) for v in values
    )


def seed_table(
    vectors: Mapping[tuple[str, str, str, int, str], tuple[np.ndarray, str, int]],
    models: Mapping[str, Mapping[str, Any]],
    *,
    baseline_group: str | None,
    seed: int,
    alpha: float = 0.05,
) -> list[dict[str, Any]]:
    """Rows of the seed table (:data:`SEED_TABLE_COLUMNS`) from per-model bootstrap vectors.

    Args:
        vectors: ``{(model, suite, corruption, severity, metric): (vector (1 + B,), protocol, n)}`` as the
            aggregators produce them (one Resampler per suite, so vectors of one suite are paired).
        models: the run's models: ``group``, ``seed``, ``pooling``, ``arch`` by name.
        baseline_group: the group the others are compared with (None: no differences).
        seed: seeds the seed-level draws.

    A (group, metric) row needs the metric for every model of the group; its protocol is the models' protocol
    when they agree. A difference needs both groups' rows and the same protocol (the same normalisation).
    """
    by_metric: dict[tuple[str, str, int, str], dict[str, list[tuple[Any, np.ndarray, str, int]]]] = {}
    members: dict[str, list[str]] = {}
    for name, desc in models.items():
        members.setdefault(str(desc.get("group") or name), []).append(name)
    for (model, suite, corruption, severity, metric), (v, protocol, n) in vectors.items():
        if model not in models:
            continue
        group = str(models[model].get("group") or model)
        entry = (models[model].get("seed"), np.asarray(v, dtype=np.float64), protocol, int(n))
        by_metric.setdefault((suite, corruption, int(severity), metric), {}).setdefault(group, []).append(
            entry
        )

    rows: list[dict[str, Any]] = []
    for (suite, corruption, severity, metric), groups in by_metric.items():
        own: dict[str, tuple[np.ndarray, str, list[Any], int]] = {}
        for group, entries in groups.items():
            if len(entries) != len(members.get(group, entries)):
                continue  # some seed lacks this metric: no group value
            entries = sorted(entries, key=lambda e: (e[0] is None, e[0] if e[0] is not None else 0))
            protocols = {e[2] for e in entries}
            widths = {e[1].shape[-1] for e in entries}
            if len(widths) != 1:
                continue
            protocol = protocols.pop() if len(protocols) == 1 else "mixed: " + " | ".join(sorted(protocols))
            stacked = np.stack([e[1] for e in entries])
            own[group] = (stacked, protocol, [e[0] for e in entries], min(e[3] for e in entries))
        for group, (stacked, protocol, seeds, n) in own.items():
            res = group_interval(stacked, seed=seed, key=group, alpha=alpha)
            rows.append(
                _row(group, "", models, members, suite, corruption, severity, metric, res, seeds, n, protocol)
            )
        if baseline_group is None or baseline_group not in own:
            continue
        base_vec, base_protocol, _, base_n = own[baseline_group]
        for group, (stacked, protocol, seeds, n) in own.items():
            if group == baseline_group or protocol != base_protocol:
                continue
            res = group_difference(
                stacked, base_vec, seed=seed, key_a=group, key_b=baseline_group, alpha=alpha
            )
            rows.append(
                _row(
                    group, baseline_group, models, members, suite, corruption, severity, metric, res, seeds,
                    min(n, base_n), f"{metric} of group minus group {baseline_group!r}, two-level paired bootstrap "
                    f"[{protocol}]",
                )
            )  # fmt: skip
    return rows


def _row(
    group: str,
    compared_to: str,
    models: Mapping[str, Mapping[str, Any]],
    members: Mapping[str, list[str]],
    suite: str,
    corruption: str,
    severity: int,
    metric: str,
    res: SeedInterval,
    seeds: list[Any],
    n: int,
    protocol: str,
) -> dict[str, Any]:
    first = models[members[group][0]]
    return {
        "group": group,
        "compared_to": compared_to,
        "pooling": str(first.get("pooling", "unknown")),
        "arch": str(first.get("arch", "unknown")),
        "suite": suite,
        "corruption": corruption,
        "severity": int(severity),
        "metric": metric,
        "value": res.estimate,
        "ci_low": res.low,
        "ci_high": res.high,
        "significant": res.significant if compared_to else "",
        "n_seeds": res.n_seeds,
        "seeds": _joined(seeds),
        "per_seed": _joined(list(res.per_seed)),
        "n": int(n),
        "interval": res.covers,
        "protocol": protocol,
    }
