"""The run store: one directory per evaluation run, safe to kill at any moment and to resume.

Layout of a run directory (default ``reports/<name>/``)::

    manifest.json        versions, seed, device, checkpoints (paths and content hashes), dataset, suite parameters,
                         command lines, times; its ``config`` part is the run's identity (see below)
    cells/<model>/<cell>.npz
                         one finished evaluation cell: compressed per-sample arrays (top-5 predictions, labels,
                         sample ids, ...) plus the cell's spec and counts as JSON strings (``__spec__``, ``__info__``)
    results.csv          long-format table with exactly ``schema.RESULT_COLUMNS``, rebuilt from the stored cells
    run.lock             held (non-blocking ``flock``) while a process works on the run

Every file is written to a temporary file in the same directory, fsynced, then renamed over the target
(``os.replace``), so a SIGKILL leaves either the old or the new file, never a torn one; leftover temporary files are
removed the next time the run is opened.

Compatibility rule for re-using a run name (``RunStore.open(config)``):

* run-level fields (``seed``, ``dataset``, ``limit``, ``backend``, ``precision``, ...) must be equal;
* a model name already in the run must come with the same checkpoint content hash and preprocessing;
* a suite already in the run must have the same parameters;
* new models, new suites, and new corruptions / severities may be added: the run is the union of its cells.

Anything else is refused with a message listing what differs, unless ``overwrite=True`` (``--new-run``), which
deletes the run's manifest, cells and results and starts afresh. Cells also carry their full spec, and a stored cell
is only reused when its spec equals the planned one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from .fileio import TMP_PREFIX, atomic_write_bytes
from .schema import RESULT_COLUMNS, SEED_COLUMNS, with_seed_columns

__all__ = [
    "RunStore",
    "StoreError",
    "RunLockedError",
    "ConfigMismatchError",
    "validate_run_name",
    "validate_key_part",
    "resolve_run_dir",
    "config_differences",
    "atomic_write_bytes",
    "MANIFEST",
    "RESULTS",
    "LOCK",
]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
RESULTS = "results.csv"
#: The seed-aware statistics per seed group (robustbench_lift.metrics.seeds.SEED_TABLE_COLUMNS).
SEEDS = "seeds.csv"
LOCK = "run.lock"
CELLS = "cells"
STORE_FORMAT = "robustbench-lift-run/1"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
#: Keys of ``config`` compared as a whole; ``models`` and ``suites`` are compared entry by entry.
_MERGEABLE = ("models", "suites")


class StoreError(ValueError):
    """A run directory cannot be used as asked (a user error: the CLI prints the message, exit code 2)."""


class RunLockedError(StoreError):
    """Another process holds the run's lock."""


class ConfigMismatchError(StoreError):
    """The requested configuration conflicts with the one stored under the run name."""


def validate_run_name(name: str) -> str:
    """Return ``name`` if it is a sane run name, else raise ``ValueError``.

    A run name is one path component of letters, digits and ``. _ + -``, starting with a letter or digit, at most 128
    characters: no separators, no ``..``, nothing absolute.
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or name in {".", ".."}:
        raise ValueError(
            f"invalid run name {name!r}: use 1-128 letters, digits and '._+-', starting with a letter or digit "
            "(no path separators, no '..')"
        )
    return name


def validate_key_part(value: str, what: str) -> str:
    """Check a model / suite / corruption name that becomes part of a cell's file name."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value) or value in {".", ".."}:
        raise ValueError(
            f"invalid {what} {value!r}: use 1-128 letters, digits and '._+-', starting with a letter or digit"
        )
    return value


def resolve_run_dir(out: str | os.PathLike[str], *, root: str | os.PathLike[str] = "reports") -> Path:
    """Turn ``--out`` into a run directory.

    A bare name (no path separator) means ``<root>/<name>``; a path is used as given. Either way the last component
    must be a valid run name and no component may be ``..``.
    """
    text = os.fspath(out)
    if not text:
        raise ValueError("the run directory must not be empty")
    path = Path(text)
    if ".." in path.parts:
        raise ValueError(f"invalid run directory {text!r}: '..' components are not allowed")
    validate_run_name(path.name)
    if len(path.parts) == 1 and not path.is_absolute():
        return Path(root) / path.name
    return path


def _json_dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)


def _canonical(obj: Any) -> Any:
    """JSON round trip, so that tuples and lists (and int/float keys) compare the way they are stored."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable list of the conflicts between a stored run config and a requested one (empty: compatible).

    Models and suites present in only one of the two are not conflicts (a run may grow); everything else must match.
    """
    old, new = _canonical(dict(old)), _canonical(dict(new))
    diffs: list[str] = []
    for key in sorted(set(old) | set(new)):
        if key in _MERGEABLE:
            o, n = old.get(key) or {}, new.get(key) or {}
            for name in sorted(set(o) & set(n)):
                if o[name] != n[name]:
                    fields = sorted(
                        k for k in set(o[name]) | set(n[name]) if o[name].get(k) != n[name].get(k)
                    )
                    for f in fields:
                        diffs.append(
                            f"{key}[{name!r}].{f}: stored {o[name].get(f)!r}, requested {n[name].get(f)!r}"
                        )
        elif old.get(key) != new.get(key):
            diffs.append(f"{key}: stored {old.get(key)!r}, requested {new.get(key)!r}")
    return diffs


def _merge_config(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    merged = _canonical(dict(new))
    old = _canonical(dict(old))
    for key in _MERGEABLE:
        entries = dict(old.get(key) or {})
        entries.update(merged.get(key) or {})
        merged[key] = entries
    return merged


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunStore:
    """A run directory: manifest, per-cell results and ``results.csv``, guarded by a lock.

    Use as a context manager (or call :meth:`acquire` / :meth:`release`); every write needs the lock::

        with RunStore("reports/demo") as store:
            store.open(config, overwrite=False, info={"command": argv})
            if not store.has_cell(key, spec):
                store.save_cell(key, spec, arrays, info)
            store.write_results(rows)

    Args:
        path: the run directory (created on first use); see :func:`resolve_run_dir` for turning a name into one.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        validate_run_name(self.path.name)
        if ".." in self.path.parts:
            raise ValueError(f"invalid run directory {os.fspath(path)!r}: '..' components are not allowed")
        self._lock: FileLock | None = None
        self._manifest: dict[str, Any] | None = None
        self._created: list[Path] = []  # folders acquire() made, innermost first (removed again on a refusal)

    # ------------------------------------------------------------------ paths
    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK

    @property
    def cells_dir(self) -> Path:
        return self.path / CELLS

    def cell_path(self, key: str) -> Path:
        """File of the cell ``key`` (``"<model>/<name>"``, each part a valid key part)."""
        parts = key.split("/")
        if len(parts) != 2:
            raise ValueError(f"invalid cell key {key!r}: expected '<model>/<cell name>'")
        for part in parts:
            validate_key_part(part, "cell key part")
        return self.cells_dir / parts[0] / f"{parts[1]}.npz"

    # ------------------------------------------------------------------ locking
    @property
    def locked(self) -> bool:
        return self._lock is not None and self._lock.is_locked

    def acquire(self) -> RunStore:
        """Take the run's lock without waiting; raise :class:`RunLockedError` if another process holds it."""
        if self.locked:
            return self
        self._created = [p for p in (self.path, *self.path.parents) if not p.exists()]
        self.path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.lock_path, timeout=0)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise RunLockedError(
                f"run directory {self.path} is in use by another process (lock file {self.lock_path} is held); "
                "wait for it to finish or choose another --out"
            ) from None
        self._lock = lock
        self._remove_temporaries()
        return self

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> RunStore:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.release()
        if exc_type is not None:
            self._remove_if_unused()

    def _remove_if_unused(self) -> None:
        """After a refused or failed first use: remove the folders acquire() created if no result was stored.

        A refusal (bad option, unknown baseline, ...) must not leave an empty run directory behind; a run that
        stored at least one cell is kept so that it can be resumed.
        """
        if not self._created or self._has_cells() or self.results_path.exists():
            return
        if self.path in self._created:
            shutil.rmtree(self.path, ignore_errors=True)
        for folder in self._created[1:]:
            with contextlib.suppress(OSError):  # only empty parents; another process may have written there
                folder.rmdir()
        self._created = []

    def _require_lock(self) -> None:
        if not self.locked:
            raise RuntimeError(
                f"run store {self.path} must be locked (use 'with RunStore(...)') before writing"
            )

    def _remove_temporaries(self) -> None:
        """Delete temporary files a killed writer left behind (only ever called under the lock)."""
        for tmp in self.path.rglob(f"{TMP_PREFIX}*"):
            if tmp.is_file():
                with contextlib.suppress(OSError):
                    tmp.unlink()
                    log.debug("removed leftover temporary file %s", tmp)

    # ------------------------------------------------------------------ manifest
    def read_manifest(self) -> dict[str, Any] | None:
        """The stored manifest, or None for a new run."""
        if not self.manifest_path.exists():
            return None
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise StoreError(
                f"cannot read {self.manifest_path}: {exc}; use --new-run to start afresh"
            ) from exc

    @property
    def manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            self._manifest = self.read_manifest() or {}
        return self._manifest

    def open(
        self, config: Mapping[str, Any], *, overwrite: bool = False, info: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Start or resume the run with ``config`` (its identity); returns the manifest written.

        Args:
            config: JSON-able identity of the run (seed, dataset, limit, models, suites, ...); see the module doc for
                what may differ from a stored run.
            overwrite: delete whatever the run holds and start afresh.
            info: JSON-able facts recorded but not compared (versions, device, command line, ...).

        Raises:
            ConfigMismatchError: ``config`` conflicts with the stored one and ``overwrite`` is False.
        """
        self._require_lock()
        stored = self.read_manifest() if not overwrite else None
        if overwrite:
            self.clear()
        elif stored is None and self._has_cells():
            raise StoreError(
                f"{self.path} holds cells but no {MANIFEST}; it was not written by this tool or is damaged. "
                "Use --new-run to start afresh"
            )
        now = _now()
        entry = {"time": now, **_canonical(dict(info or {}))}
        if stored is None:
            manifest = {
                "format": STORE_FORMAT,
                "created": now,
                "updated": now,
                "config": _canonical(dict(config)),
                "sessions": [entry],
            }
        else:
            if stored.get("format") != STORE_FORMAT:
                raise StoreError(
                    f"{self.manifest_path} has format {stored.get('format')!r}, expected {STORE_FORMAT!r}; "
                    "use --new-run to start afresh"
                )
            diffs = config_differences(stored.get("config", {}), config)
            if diffs:
                listing = "\n  ".join(diffs)
                raise ConfigMismatchError(
                    f"run {self.path} was started with a different configuration:\n  {listing}\n"
                    "re-run with the original settings to resume, choose another --out, or pass --new-run to "
                    "discard the stored results"
                )
            manifest = dict(stored)
            manifest["config"] = _merge_config(stored.get("config", {}), config)
            manifest["updated"] = now
            manifest["sessions"] = [*stored.get("sessions", []), entry]
        self.write_manifest(manifest)
        return manifest

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        self._require_lock()
        atomic_write_bytes(self.manifest_path, (_json_dumps(manifest) + "\n").encode("utf-8"))
        self._manifest = _canonical(dict(manifest))

    def update_session(self, **fields: Any) -> None:
        """Add facts to the current session entry of the manifest (e.g. cells run, finish time)."""
        manifest = dict(self.manifest)
        sessions = list(manifest.get("sessions") or [{}])
        sessions[-1] = {**sessions[-1], **_canonical(fields)}
        manifest["sessions"] = sessions
        self.write_manifest(manifest)

    def clear(self) -> None:
        """Delete the run's manifest, cells and results (only the files this store writes)."""
        self._require_lock()
        if self.cells_dir.exists():
            shutil.rmtree(self.cells_dir)
        for name in (MANIFEST, RESULTS, SEEDS):
            with contextlib.suppress(FileNotFoundError):
                (self.path / name).unlink()
        self._manifest = None
        log.info("cleared run %s", self.path)

    # ------------------------------------------------------------------ cells
    def _has_cells(self) -> bool:
        return self.cells_dir.exists() and any(self.cells_dir.rglob("*.npz"))

    def cell_keys(self) -> list[str]:
        """Keys of the stored cells, sorted."""
        if not self.cells_dir.exists():
            return []
        keys = []
        for f in self.cells_dir.glob("*/*.npz"):
            if not f.name.startswith(TMP_PREFIX):
                keys.append(f"{f.parent.name}/{f.stem}")
        return sorted(keys)

    def save_cell(
        self, key: str, spec: Mapping[str, Any], arrays: Mapping[str, np.ndarray], info: Mapping[str, Any]
    ) -> Path:
        """Persist one finished cell atomically (compressed ``.npz``)."""
        self._require_lock()
        reserved = {"__spec__", "__info__"} & set(arrays)
        if reserved:
            raise ValueError(f"array names {sorted(reserved)} are reserved")
        buf = io.BytesIO()
        payload = {name: np.asarray(a) for name, a in arrays.items()}
        payload["__spec__"] = np.array(json.dumps(_canonical(dict(spec)), sort_keys=True))
        payload["__info__"] = np.array(json.dumps(_canonical(dict(info)), sort_keys=True))
        np.savez_compressed(buf, **payload)
        path = self.cell_path(key)
        atomic_write_bytes(path, buf.getvalue())
        return path

    def load_cell(self, key: str) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]] | None:
        """``(spec, arrays, info)`` of a stored cell, or None when it is absent or unreadable (then it is re-run)."""
        path = self.cell_path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {name: z[name] for name in z.files}
            spec = json.loads(str(arrays.pop("__spec__")))
            info = json.loads(str(arrays.pop("__info__")))
        except Exception as exc:  # a damaged file is recomputed, never trusted
            log.warning("ignoring unreadable cell %s (%s); it will be recomputed", path, exc)
            return None
        return spec, arrays, info

    def has_cell(self, key: str, spec: Mapping[str, Any]) -> bool:
        """True when the cell is stored with exactly this spec."""
        loaded = self.load_cell(key)
        if loaded is None:
            return False
        if loaded[0] != _canonical(dict(spec)):
            log.info("stored cell %s has a different spec; it will be recomputed", key)
            return False
        return True

    def iter_cells(self) -> Iterator[tuple[str, dict[str, Any], dict[str, np.ndarray], dict[str, Any]]]:
        """``(key, spec, arrays, info)`` for every readable stored cell, in key order."""
        for key in self.cell_keys():
            loaded = self.load_cell(key)
            if loaded is not None:
                yield (key, *loaded)

    # ------------------------------------------------------------------ results table
    def write_results(self, rows: list[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
        """Write ``results.csv`` atomically with exactly ``RESULT_COLUMNS``; returns the table written."""
        self._require_lock()
        df = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        missing = [c for c in RESULT_COLUMNS if c not in df.columns]
        extra = [c for c in df.columns if c not in RESULT_COLUMNS]
        if extra:
            raise ValueError(f"results rows have columns outside the schema: {extra}")
        for c in missing:
            if c in ("ci_low", "ci_high", "n"):
                df[c] = np.nan
            elif c not in SEED_COLUMNS:
                raise ValueError(f"results rows lack the required column {c!r}")
        df = with_seed_columns(df)
        df = df.loc[:, list(RESULT_COLUMNS)]
        data = df.to_csv(index=False, float_format="%.10g", lineterminator="\n").encode("utf-8")
        atomic_write_bytes(self.results_path, data)
        # what was written, so report / check can tell a truncated or stale results.csv from this one
        if self.manifest.get("sessions"):
            self.update_session(results_rows=len(df), results_sha256=hashlib.sha256(data).hexdigest())
        return df

    @property
    def seeds_path(self) -> Path:
        return self.path / SEEDS

    def write_seed_table(self, rows: list[Mapping[str, Any]], columns: tuple[str, ...]) -> pd.DataFrame:
        """Write ``seeds.csv`` (the seed-aware statistics) atomically; returns the table written."""
        self._require_lock()
        df = pd.DataFrame(list(rows), columns=list(columns))
        data = df.to_csv(index=False, float_format="%.10g", lineterminator="\n").encode("utf-8")
        atomic_write_bytes(self.seeds_path, data)
        return df

    def read_results(self) -> pd.DataFrame:
        if not self.results_path.exists():
            raise FileNotFoundError(f"{self.results_path} does not exist yet")
        return pd.read_csv(self.results_path, keep_default_na=False, na_values=[""])


def failed_cells_message(failed: Mapping[str, str], *, shown: int = 3) -> str:
    """One line naming the cells an evaluate could not run and why (the first ``shown`` of them)."""
    items = list(failed.items())
    text = "; ".join(f"{key}: {why}" for key, why in items[:shown])
    more = f"; and {len(items) - shown} more" if len(items) > shown else ""
    return f"{len(items)} cell(s) failed and are not in {RESULTS} ({text}{more})"


def run_problems(path: str | os.PathLike[str]) -> list[str]:
    """Why a run directory's ``results.csv`` is not the complete result of its last ``evaluate`` (empty: it is).

    Read-only (no lock). Finds: no results.csv; an evaluate that was killed before it finished (its cells so far
    are stored, the table is from an earlier session or absent); a results.csv that differs from the one evaluate
    wrote (truncated or edited); cells the last evaluate could not run (unreadable data). Each message ends with how
    to finish the run: the same evaluate command again.
    """
    run = Path(path)
    manifest_path = run / MANIFEST
    results = run / RESULTS
    if not manifest_path.exists():
        if not results.exists():
            return [
                f"{run} holds neither {RESULTS} nor {MANIFEST}: it is not a run directory written by evaluate"
            ]
        return table_problems(results)
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        return [f"cannot read {manifest_path}: {exc}"]
    sessions = manifest.get("sessions") or [{}]
    last = sessions[-1] if isinstance(sessions[-1], dict) else {}
    command = last.get("command")
    again = (
        f"re-run the same evaluate command to finish it ({' '.join(map(str, command))})"
        if command
        else "re-run the same evaluate command to finish it"
    )
    stored = sum(1 for _ in (run / CELLS).glob("*/*.npz")) if (run / CELLS).exists() else 0
    problems = []
    if "finished" not in last:
        started = last.get("time", "?")
        problems.append(
            f"the last evaluate of {run} (started {started}) did not finish: {stored} cells are stored and kept, "
            f"{RESULTS} {'is from an earlier session' if results.exists() else 'was not written'}; {again}"
        )
    elif not results.exists():
        problems.append(f"{run} has no {RESULTS}; {again}")
    else:
        digest = last.get("results_sha256")
        data = results.read_bytes()
        if digest is not None and hashlib.sha256(data).hexdigest() != digest:
            rows = max(data.count(b"\n") - 1, 0)
            problems.append(
                f"{results} is not the table evaluate wrote ({rows} rows, {last.get('results_rows', '?')} written): "
                f"it was truncated or edited; {again}"
            )
        elif digest is None:
            problems += table_problems(results)
    failed = last.get("cells_failed") or {}
    if "finished" in last and failed:
        problems.append(
            f"the last evaluate of {run}: {failed_cells_message(failed)}; fix the data and {again}"
        )
    return problems


def table_problems(results: Path) -> list[str]:
    """Signs that a results.csv without a manifest was cut short."""
    data = results.read_bytes()
    if not data:
        return [f"{results} is empty"]
    if not data.endswith(b"\n"):
        return [
            f"{results} ends in the middle of a line: it was truncated (re-run the evaluate that wrote it)"
        ]
    return []
