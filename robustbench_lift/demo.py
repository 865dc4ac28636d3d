"""The embedded main job: lift vs max vs avg vs blur pooling on real Fashion-MNIST, trained, evaluated, reported.

:func:`run_demo` trains four ``convnet`` models that differ only in their pooling layers, evaluates each on

* the corruption suite ``cifar10-c`` (15 benchmark + 4 held-out corruptions x 5 severities; CIFAR-10-C parameters,
  scaled to 28 px by the corruption engine),
* the perturbation suite ``cifar10-p`` (all 14 perturbations, difficulty 1),
* the shift probes (crop, circular, diagonal, equivariance) and the reconstruction probe,

on one seeded subset of the test split (the same images for every model and cell, so comparisons are paired), with
the max-pool model as the baseline of every normalised number (mCE = 100, mFR = 100), and writes the comparative
report. Everything goes through the library's own entry points: :func:`robustbench_lift.train.train`,
:func:`robustbench_lift.evaluation.evaluate` and :func:`robustbench_lift.report.write_report`.

Layout of the output folder (default ``reports/demo``)::

    demo.json                 settings, per-step timings and the headline table of the last run
    checkpoints/<pool>.safetensors      last-epoch model (evaluated); ``<pool>.best.safetensors`` and the resume
                                        state ``<pool>.safetensors.resume.pt`` next to it
    run/                      the evaluator's run store (manifest.json, cells/, results.csv)
    report/                   report.html, report.md, summary.csv and the other tables, plots, gallery.png

Re-running with the same settings resumes: finished epochs and stored evaluation cells are reused, only the report
is redrawn. Settings that differ from the stored ones are refused (with the differences listed) unless
``restart=True``, which deletes the folder's checkpoints and run first.

Profiles (:data:`PROFILES`) fix the amount of work: ``default`` (about 90 % clean accuracy, meant to finish within
10 minutes on a 2-core CPU), ``quick`` (the same pipeline on fewer images and epochs, within 2 minutes) and ``ci``
(a tiny deterministic model for the regression gate, ``make gate``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .fileio import atomic_write_bytes
from .report.summary import DEMO_KEYS, headline_title
from .report.summary import headline_table as build_headline_table
from .store import ConfigMismatchError

__all__ = [
    "ARCH",
    "BASELINE_POOLING",
    "POOLINGS",
    "SUITES",
    "PROFILES",
    "DemoProfile",
    "DemoResult",
    "HEADLINE_KEYS",
    "run_demo",
    "format_headline",
    "resolve_profile",
    "check_dataset_available",
]

log = logging.getLogger(__name__)

ARCH = "convnet"
#: The four models of the demo differ only in this (see ``robustbench_lift.layers.pools``).
POOLINGS: tuple[str, ...] = ("lift", "max", "avg", "blur")
#: The model that scores 100 in every baseline-normalised number.
BASELINE_POOLING = "max"
SUITES: tuple[str, ...] = ("cifar10-c", "cifar10-p", "shift", "reconstruction")
SETTINGS_FILE = "demo.json"
_FORMAT = "robustbench-lift-demo/1"

#: ``(check key, column title)`` of the demo's printout; the keys and titles live in ``report.summary``.
HEADLINE_KEYS: tuple[tuple[str, str], ...] = tuple(
    (k, headline_title(k, BASELINE_POOLING)) for k in DEMO_KEYS
)


@dataclass(frozen=True)
class DemoProfile:
    """How much work the demo does. Every field changes the numbers (and is compared on resume).

    Args:
        name: profile name.
        epochs: training epochs per model.
        limit_train: train on a seeded subset of this many training images (None: all 60 000).
        limit: evaluate the corruption suites on a seeded subset of this many test images (every model).
        limit_val: held-out training images validated after each epoch (training's default held-out split; progress
            only: the last checkpoint is evaluated, not the best one).
        widths, convs_per_stage: the ConvNet's stages.
        batch_size, optimizer, lr, crop_padding: training (``robustbench_lift.train.train``).
        n_boot: bootstrap resamples for the CIs.
        threads: torch CPU threads (None: the cores this process may use, or one on a busy machine).
        seed: seeds training (data order, augmentation, initialisation) and evaluation (subset, corruptions).
        seeds: training seeds per pooling (``seed``, ``seed + 1``, ...): each pooling is a seed group of that many
            models, and the report's intervals cover the seeds as well as the images (model names ``<pool>-s<k>``
            when there are several).
        limit_probes: evaluate the other suites (perturbations, shift and reconstruction probes, PGD) on this many
            test images, in a run of their own (``run-probes``); None: the same images and run as the corruptions.
        pgd_eps: L-inf radii of a PGD-10 curve (suite ``pgd-linf``) added to the other suites; empty: none.
    """

    name: str
    epochs: int
    limit_train: int | None
    limit: int
    limit_val: int | None = 2000
    widths: tuple[int, ...] = (16, 32, 64)
    convs_per_stage: int = 2
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    crop_padding: int = 0
    n_boot: int = 1000
    threads: int | None = None
    seed: int = 0
    seeds: int = 1
    limit_probes: int | None = None
    pgd_eps: tuple[str, ...] = ()

    def settings(self) -> dict[str, Any]:
        """The JSON-able fields that determine the results (``threads`` does not)."""
        d = asdict(self)
        d.pop("threads")
        d["widths"] = list(self.widths)
        d["pgd_eps"] = list(self.pgd_eps)
        for k, default in (("seeds", 1), ("limit_probes", None), ("pgd_eps", [])):
            if d[k] == default:  # settings of one-seed, one-run profiles read as before
                d.pop(k)
        return d


PROFILES: dict[str, DemoProfile] = {
    # 3 seeds per pooling; 1000 test images for the corruption suite, 100 for perturbations, probes and PGD
    "default": DemoProfile(
        name="default",
        epochs=2,
        limit_train=12_000,
        limit=1000,
        convs_per_stage=1,
        batch_size=128,
        seeds=3,
        limit_probes=100,
        pgd_eps=("0", "0.02", "0.05", "0.1"),
    ),
    "quick": DemoProfile(
        name="quick",
        epochs=1,
        limit_train=4_000,
        limit=200,
        convs_per_stage=1,
        limit_val=500,
        batch_size=128,
        n_boot=300,
        seeds=2,
        limit_probes=30,
        pgd_eps=("0", "0.05"),
    ),
    # The CI gate: tiny, one thread (so the numbers do not depend on the runner's core count), fully seeded.
    "ci": DemoProfile(
        name="ci",
        epochs=2,
        limit_train=4_000,
        limit=64,
        limit_val=500,
        widths=(8, 16, 32),
        convs_per_stage=1,
        batch_size=64,
        n_boot=200,
        threads=1,
    ),
}


@dataclass
class DemoResult:
    """What :func:`run_demo` did and wrote.

    Attributes:
        out_dir, checkpoints (pooling -> last checkpoint), run_dir, report_dir (None when the report was skipped).
        headline: one row per pooling (``pooling``, ``model``, then the :data:`HEADLINE_KEYS` values with
            ``<key>_ci_low`` / ``<key>_ci_high`` where there is a CI, and ``train_val_acc``).
        timings: seconds per step (``train:<pool>``, ``evaluate``, ``report``, ``total``).
        trained_epochs: epochs trained by this call per pooling (0 when the checkpoint was reused).
        cells_run, cells_reused: evaluation cells computed now / taken from the store (all runs).
        extra_runs: run directories besides ``run_dir`` (``run-probes`` when the profile has ``limit_probes``).
        profile: the settings used.
    """

    out_dir: Path
    checkpoints: dict[str, Path]
    run_dir: Path
    report_dir: Path | None
    headline: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)
    trained_epochs: dict[str, int] = field(default_factory=dict)
    cells_run: int = 0
    cells_reused: int = 0
    profile: DemoProfile | None = None
    notes: list[str] = field(default_factory=list)
    extra_runs: list[Path] = field(default_factory=list)  # the probes' run when it is separate
    answer: list[str] = field(
        default_factory=list
    )  # the report's seed-aware answer, one sentence per comparison


# ----------------------------------------------------------------------------------------------------------
# settings


def resolve_profile(
    profile: str | DemoProfile = "default",
    *,
    epochs: int | None = None,
    limit: int | None = None,
    limit_train: int | None = None,
    threads: int | None = None,
    seed: int | None = None,
) -> DemoProfile:
    """A profile by name (see :data:`PROFILES`) with the given fields overridden."""
    if isinstance(profile, str):
        if profile not in PROFILES:
            raise ValueError(f"unknown demo profile {profile!r}; valid: {', '.join(PROFILES)}")
        profile = PROFILES[profile]
    elif not isinstance(profile, DemoProfile):
        raise TypeError(f"profile must be a name or a DemoProfile, got {type(profile).__name__}")
    for name, value in (
        ("epochs", epochs),
        ("limit", limit),
        ("limit_train", limit_train),
        ("threads", threads),
    ):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an int, got {seed!r}")
    changes = {
        k: v
        for k, v in (
            ("epochs", epochs),
            ("limit", limit),
            ("limit_train", limit_train),
            ("threads", threads),
            ("seed", seed),
        )
        if v is not None
    }
    return replace(profile, **changes) if changes else profile


def check_dataset_available(dataset: str) -> None:
    """Raise ``FileNotFoundError`` with the install command when the default Fashion-MNIST files are missing."""
    from .data import FASHION_MNIST_ROOT

    if dataset.strip().lower() != "fashion-mnist":
        return  # an explicit root or another dataset: open_dataset reports problems itself
    root = Path(FASHION_MNIST_ROOT)
    wanted = [f"{s}-{k}-ubyte" for s in ("train", "t10k") for k in ("images-idx3", "labels-idx1")]
    missing = [w for w in wanted if not (root / f"{w}.gz").exists() and not (root / w).exists()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST is not installed: {root} lacks {', '.join(m + '.gz' for m in missing)}. "
            "Install it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu package), or pass "
            "--dataset fashion-mnist:DIR for a folder holding the four IDX .gz files"
        )


def _default_threads() -> int:
    """The cores this process may use; one when other processes already keep those cores busy.

    Torch's intra-op threads wait for each other at every operation; on a busy machine a descheduled thread stalls
    the rest, and on the demo's 28 px batches two threads were measured 5 to 20 times slower than one.
    """
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cores = max(1, os.cpu_count() or 1)
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return cores
    if cores > 1 and load > cores - 0.5:
        log.info(
            "load average %.1f on %d cores: using one torch thread (pass threads=N to override)", load, cores
        )
        return 1
    return cores


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _identity(profile: DemoProfile, dataset: str, poolings: Sequence[str], suites: Sequence[str]) -> dict:
    return {
        "arch": ARCH,
        "dataset": dataset,
        "poolings": list(poolings),
        "suites": list(suites),
        "baseline": BASELINE_POOLING if BASELINE_POOLING in poolings else poolings[0],
        **profile.settings(),
    }


def _read_settings(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}; pass restart=True (--restart) to start over") from exc
    if (
        not isinstance(data, dict)
        or data.get("format") != _FORMAT
        or not isinstance(data.get("settings"), dict)
    ):
        raise ValueError(f"{path} is not a demo settings file of this version; pass restart=True (--restart)")
    return data


def _clear(out: Path) -> None:
    """Delete what earlier demo runs wrote into ``out`` (only the demo's own files and folders)."""
    for sub in ("checkpoints", "run", "run-probes", "report"):
        if (out / sub).is_dir():
            shutil.rmtree(out / sub)
    with contextlib.suppress(FileNotFoundError):
        (out / SETTINGS_FILE).unlink()


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    atomic_write_bytes(
        path, (json.dumps(data, indent=2, allow_nan=False, default=str) + "\n").encode("utf-8")
    )


# ----------------------------------------------------------------------------------------------------------
# headline


def headline_table(results: pd.DataFrame, poolings: Sequence[str]) -> pd.DataFrame:
    """One row per model: pooling, model and the :data:`HEADLINE_KEYS` numbers (with CIs) from a results table."""
    return build_headline_table(results, DEMO_KEYS, order=poolings)


def format_headline(table: pd.DataFrame) -> str:
    """The headline table as aligned text (values with 95 % CIs in brackets where there is one)."""
    first = "pooling"
    if "model" in table.columns and any(str(m) != str(p) for m, p in zip(table["model"], table["pooling"])):
        first = "model"  # several models per pooling (seeds): name them
    titles = [(first, first)] + [(k, t) for k, t in HEADLINE_KEYS if k in table.columns]
    if "train_val_acc" in table.columns:
        titles.append(("train_val_acc", "val acc % (training)"))
    cells: list[list[str]] = []
    for _, r in table.iterrows():
        line = []
        for key, _ in titles:
            v = r[key]
            if key == first:
                line.append(str(v))
                continue
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                line.append("n/a")
                continue
            lo, hi = r.get(f"{key}_ci_low", math.nan), r.get(f"{key}_ci_high", math.nan)
            text = f"{v:.1f}"
            if isinstance(lo, float) and isinstance(hi, float) and math.isfinite(lo) and math.isfinite(hi):
                text += f" [{lo:.1f}, {hi:.1f}]"
            line.append(text)
        cells.append(line)
    widths = [
        max(len(t), *(len(c[i]) for c in cells)) if cells else len(t) for i, (_, t) in enumerate(titles)
    ]
    lines = ["  ".join(t.ljust(w) for (_, t), w in zip(titles, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# the job


def run_demo(
    out: str | os.PathLike[str] = "reports/demo",
    *,
    profile: str | DemoProfile = "default",
    epochs: int | None = None,
    limit: int | None = None,
    limit_train: int | None = None,
    threads: int | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    dataset: str = "fashion-mnist",
    poolings: Sequence[str] = POOLINGS,
    suites: Sequence[str] = SUITES,
    report: bool = True,
    restart: bool = False,
    progress: bool | None = None,
) -> DemoResult:
    """Train one ConvNet per pooling, evaluate them all, write the comparative report (see the module docstring).

    Args:
        out: output folder (checkpoints, run store, report, ``demo.json``).
        profile: ``"default"``, ``"quick"``, ``"ci"`` or a :class:`DemoProfile`.
        epochs, limit, limit_train, threads, seed: override the profile's fields.
        device: ``"cpu"``, ``"cuda"``, ... (default: CUDA when available, else the CPU).
        dataset: Fashion-MNIST spec (``fashion-mnist`` reads the Debian package's files).
        poolings: pooling kinds to compare (the max-pool model is the baseline when present).
        suites: evaluation suites (corruption, perturbation and probe suites of the evaluator).
        report: write the HTML/Markdown/CSV report and plots (False: only train and evaluate).
        restart: delete the folder's earlier demo work first (needed when the settings changed).
        progress: progress bars on stderr (default: when stderr is a terminal).

    Returns:
        a :class:`DemoResult`.

    Raises:
        FileNotFoundError: Fashion-MNIST is not installed (the message gives the install command).
        ValueError: bad arguments, or ``out`` holds a demo run with other settings and ``restart`` is False.
    """
    from .evaluation import evaluate
    from .layers.pools import list_pools
    from .models import list_models
    from .train import train

    started = time.perf_counter()
    prof = resolve_profile(
        profile, epochs=epochs, limit=limit, limit_train=limit_train, threads=threads, seed=seed
    )
    poolings = list(dict.fromkeys(poolings))
    if not poolings:
        raise ValueError("poolings must name at least one pooling kind")
    unknown = [p for p in poolings if p not in list_pools()]
    if unknown:
        raise ValueError(f"unknown pooling(s) {unknown}; valid: {', '.join(list_pools())}")
    if ARCH not in list_models():  # pragma: no cover - the registry always has it
        raise ValueError(f"model {ARCH!r} is not registered")
    suites = list(dict.fromkeys(suites))
    if not suites:
        raise ValueError("suites must name at least one suite")
    check_dataset_available(dataset)
    dev = (
        torch.device(device)
        if device is not None
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    n_threads = prof.threads or _default_threads()

    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out must be a folder, got the file {out_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    settings_path = out_dir / SETTINGS_FILE
    identity = _identity(prof, dataset, poolings, suites)
    stored = None if restart else _read_settings(settings_path)
    if stored is not None and stored["settings"] != identity:
        diff = [
            f"{k}: {stored['settings'].get(k)!r} -> {identity.get(k)!r}"
            for k in sorted(set(stored["settings"]) | set(identity))
            if stored["settings"].get(k) != identity.get(k)
        ]
        raise ValueError(
            f"{out_dir} holds a demo run with other settings ({'; '.join(diff)}); pass restart=True (--restart) "
            "to discard it, or choose another out folder (--out)"
        )
    if restart:
        log.info("restart: deleting the earlier demo work in %s", out_dir)
        _clear(out_dir)
    state: dict[str, Any] = {"format": _FORMAT, "settings": identity, "status": "training"}
    _write_json(settings_path, state)

    ckpt_dir, run_dir = out_dir / "checkpoints", out_dir / "run"
    result = DemoResult(
        out_dir=out_dir,
        checkpoints={},
        run_dir=run_dir,
        report_dir=None,
        headline=pd.DataFrame(),
        profile=prof,
    )
    val_acc: dict[str, float] = {}
    model_kwargs = {"widths": list(prof.widths), "convs_per_stage": prof.convs_per_stage}
    with _torch_threads(n_threads):
        log.info(
            "demo %s: %s on %s, pooling %s, %d epoch(s) on %s training images, evaluation on %d test images, "
            "%s, %d thread(s)",
            prof.name, ARCH, dataset, "/".join(poolings), prof.epochs, prof.limit_train or "all", prof.limit, dev,
            n_threads,
        )  # fmt: skip
        names: list[str] = []
        for pool in poolings:
            for k in range(prof.seeds):
                name = _model_name(pool, k, prof.seeds)
                t0 = time.perf_counter()
                trained = train(
                    ARCH,
                    pool,
                    dataset,
                    epochs=prof.epochs,
                    out=ckpt_dir / f"{name}.safetensors",
                    batch_size=prof.batch_size,
                    optimizer=prof.optimizer,
                    lr=prof.lr,
                    crop_padding=prof.crop_padding,
                    seed=prof.seed + k,
                    deterministic=True,
                    limit_train=prof.limit_train,
                    limit_val=prof.limit_val,
                    model_kwargs=model_kwargs,
                    num_threads=n_threads,
                    device=dev,
                    progress=progress,
                )
                names.append(name)
                result.timings[f"train:{name}"] = time.perf_counter() - t0
                result.checkpoints[name] = trained.last_path
                result.trained_epochs[name] = trained.epochs_trained
                val_acc[name] = 100.0 * trained.final_val_acc
                log.info(
                    "%s: %s (%d epoch(s) trained now), validation accuracy %.2f %%, %.1f s",
                    name, "trained" if trained.epochs_trained else "reused", trained.epochs_trained, val_acc[name],
                    result.timings[f"train:{name}"],
                )  # fmt: skip

        state["status"] = "evaluating"
        _write_json(settings_path, state)
        t0 = time.perf_counter()
        runs = _demo_runs(run_dir, out_dir / "run-probes", suites, prof)
        evaluated = None
        results_all: list[pd.DataFrame] = []
        for path, run_suites, limit in runs:
            try:
                done = evaluate(
                    [result.checkpoints[n] for n in names],
                    dataset,
                    run_suites,
                    out=path,
                    limit=limit,
                    batch_size=256,
                    device=dev,
                    seed=prof.seed,
                    names=names,
                    baseline=_model_name(identity["baseline"], 0, prof.seeds),
                    n_boot=prof.n_boot,
                    progress=bool(progress) if progress is not None else _stderr_is_terminal(),
                    command=["robustbench-lift", "demo", "--profile", prof.name],
                )
            except ConfigMismatchError as exc:
                raise ValueError(
                    f"{exc}\nThe demo's run in {path} was made with other settings or another version of the "
                    "suites; re-run the demo with --restart to start over"
                ) from exc
            result.cells_run += done.cells_run
            result.cells_reused += done.cells_skipped
            evaluated = done if evaluated is None else evaluated
            results_all.append(done.results)
            if path != run_dir:
                result.extra_runs.append(path)
        result.timings["evaluate"] = time.perf_counter() - t0
        log.info(
            "evaluation: %d cell(s) computed, %d reused, %.1f s",
            result.cells_run, result.cells_reused, result.timings["evaluate"],
        )  # fmt: skip

        headline = headline_table(pd.concat(results_all, ignore_index=True), names)
        if not headline.empty:
            headline["train_val_acc"] = headline["model"].map(val_acc)
        result.headline = headline

        if report:
            t0 = time.perf_counter()
            result.report_dir, notes = _write_report(
                out_dir / "report", [run_dir, *result.extra_runs], prof, poolings, result.answer
            )
            result.notes += notes
            result.timings["report"] = time.perf_counter() - t0

    result.timings["total"] = time.perf_counter() - started
    state.update(
        status="done",
        timings={k: round(v, 2) for k, v in result.timings.items()},
        trained_epochs=result.trained_epochs,
        cells_run=result.cells_run,
        cells_reused=result.cells_reused,
        device=str(dev),
        threads=n_threads,
        headline=_json_records(headline),
    )
    _write_json(settings_path, state)
    return result


def _stderr_is_terminal() -> bool:
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def _json_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    records = []
    for rec in table.to_dict("records"):
        records.append(
            {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in rec.items()}
        )
    return records


def _model_name(pool: str, k: int, seeds: int) -> str:
    """``pool`` with one seed (the names of the one-seed profiles, e.g. the CI gate's), ``<pool>-s<k>`` with several."""
    return pool if seeds == 1 else f"{pool}-s{k}"


def _demo_runs(
    run_dir: Path, probes_dir: Path, suites: Sequence[str], prof: DemoProfile
) -> list[tuple[Path, list[Any], int]]:
    """(run directory, suites, image limit) of each evaluation: one run, or corruption suites on ``limit`` images and
    the rest (plus the PGD curve) on ``limit_probes`` images."""
    from .attacks import adversarial_suite
    from .evaluation import resolve_suite_kind

    extra: list[Any] = [adversarial_suite("pgd-linf", list(prof.pgd_eps))] if prof.pgd_eps else []
    if prof.limit_probes is None:
        return [(run_dir, [*suites, *extra], prof.limit)]
    corruption = [s for s in suites if resolve_suite_kind(s).name == "corruption"]
    others = [s for s in suites if s not in corruption] + extra
    runs = [(run_dir, corruption, prof.limit)] if corruption else []
    if others:
        runs.append((probes_dir, others, prof.limit_probes))
    return runs


def _write_report(
    report_dir: Path,
    run_dirs: Sequence[Path],
    prof: DemoProfile,
    poolings: Sequence[str],
    answer_lines: list[str],
) -> tuple[Path, list[str]]:
    from .report import write_report

    report_dir.mkdir(parents=True, exist_ok=True)
    title = (
        f"robustbench-lift demo: {' vs '.join(poolings)} pooling on Fashion-MNIST "
        f"({ARCH}, {prof.seeds} seed(s) per pooling, {prof.epochs} epoch(s), {prof.limit} test images"
        + (f", {prof.limit_probes} for perturbations and probes)" if prof.limit_probes is not None else ")")
    )
    # the gallery is drawn from the run's dataset
    written = write_report(list(run_dirs), report_dir, title=title)
    answer_lines[:] = written.answer_lines
    return report_dir, list(written.notes)
