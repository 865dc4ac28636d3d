"""The resume state written after every epoch, and the check that a resume uses the same settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from robustbench_lift.fileio import atomic_path

from .config import TrainConfig

_STATE_FORMAT = 1


def _save_state(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_state(path: Path, cfg: TrainConfig) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise ValueError(
            f"cannot read the resume state {path}: {exc}; delete it or pass restart=True (--restart)"
        ) from None
    if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
        raise ValueError(
            f"{path} is not a resume state of this version; delete it or pass restart=True (--restart)"
        )
    saved = state["config"]
    now = cfg.fingerprint()
    diff = [f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in now if saved.get(k) != now[k]]
    if diff:
        raise ValueError(
            f"{path} was saved by a run with other settings ({'; '.join(diff)}); "
            "use another --out, or pass restart=True (--restart) to start over"
        )
    return state
