"""Parity of the torch corruption engine with the published reference (imagecorruptions 1.1.2).

Runs every corruption x severity on real photos (scikit-image's bundled pictures, centre-cropped and resized to
each requested size) through both backends and compares. The suite is ``imagenet-c`` for 18 corruptions and
``imagecorruptions`` for elastic_transform (``PARITY_SUITES``): the ImageNet-C suite follows Hendrycks' elastic
transform, a different algorithm from the package's, while the ``imagecorruptions`` suite runs the package's own.

* ``deterministic`` corruptions (no random draw): PSNR(ours, reference), target >= 35 dB;
* ``fed`` corruptions (snow, fog, spatter, elastic_transform): our function and the published one are fed identical
  random numbers, then compared like the deterministic ones (PSNR(ours, reference) >= 35 dB);
* ``stochastic`` corruptions: the two backends draw independently; compare the mean PSNR(corrupted, clean) of ours
  and of the reference over images x repeats (different sample ids), target |difference| <= 1 dB.

The ImageNet-C table is applied at every
size as written (what imagecorruptions does); the size warning is silenced here on purpose.

With ``--perturbations`` it compares the perturbation engine with the CIFAR-10-P / ImageNet-P generators instead
(``benchmarks/_parity_p.py``: the generators' steps re-implemented from the published scripts; frame PSNR for the
deterministic sequences, PSNR-to-clean for the noisy ones).

Usage::

    python benchmarks/parity.py --perturbations [--p-suites cifar10-p,imagenet-p] [--photos N]
    python benchmarks/parity.py [--sizes 224,32] [--severities 1,2,3,4,5] [--corruptions a,b] [--photos N]
                                [--repeats R] [--out reports/parity/parity.csv] [--quick]

Exit code 0 when every row meets its target, 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

if __name__ == "__main__":  # run as a script: make the project importable (see _setup.py)
    import _setup  # noqa: F401
import numpy as np
import torch
from PIL import Image

from corruptions.api import corrupt, list_corruptions  # noqa: E402
from corruptions.base import CORRUPTIONS  # noqa: E402
from corruptions.reference import REFERENCE_CORRUPTIONS, corrupt_reference, random_source, reference_function  # noqa: E402
from corruptions.rng import derive_seed  # noqa: E402
from corruptions.suites import Suite, SuiteSizeWarning, get_suite  # noqa: E402

__all__ = [
    "PHOTOS",
    "DETERMINISTIC",
    "FED",
    "PARITY_SUITES",
    "PSNR_TARGET",
    "DIFF_TARGET",
    "ParityRow",
    "load_photos",
    "psnr",
    "parity_suite",
    "parity_cell",
    "run_parity",
    "write_csv",
    "format_summary",
    "main",
]

#: scikit-image's bundled RGB photos (no download needed).
PHOTOS: tuple[str, ...] = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
)
#: Corruptions without any random draw.
DETERMINISTIC: frozenset[str] = frozenset(
    {
        "brightness",
        "contrast",
        "saturate",
        "jpeg_compression",
        "pixelate",
        "defocus_blur",
        "gaussian_blur",
        "zoom_blur",
    }
)
#: Stochastic corruptions whose draws can be fed identically to both implementations.
FED: frozenset[str] = frozenset({"snow", "fog", "spatter", "elastic_transform"})
#: The suite each corruption is compared in when it is not ``imagenet-c``.
PARITY_SUITES: dict[str, str] = {"elastic_transform": "imagecorruptions"}
PSNR_TARGET = 35.0
DIFF_TARGET = 1.0
PSNR_CAP = 100.0  # identical images: reported as 100 dB instead of infinity


# --------------------------------------------------------------------------------------------- data
def load_photos(size: int, names: Sequence[str] = PHOTOS) -> torch.Tensor:
    """scikit-image's photos, centre-cropped to a square and resized to ``size`` (Lanczos): uint8 (N, 3, size, size)."""
    import skimage.data

    root = Path(skimage.data.__file__).parent
    out = []
    for name in names:
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(f"scikit-image photo {name} not found in {root}")
        with Image.open(path) as im:
            img = im.convert("RGB")
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.LANCZOS)
        out.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1))
    return torch.stack(out)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of two uint8 batches (N, C, H, W), capped at ``PSNR_CAP``."""
    mse = ((a.double() - b.double()) ** 2).mean(dim=(1, 2, 3))
    val = 10 * torch.log10(255.0**2 / mse.clamp_min(1e-12))
    return val.clamp(max=PSNR_CAP)


def parity_suite(name: str | None = None) -> Suite:
    """The suite ``name`` is compared in: ``imagecorruptions`` for elastic_transform (the package's own variant),
    ``imagenet-c`` for the others (the same parameters as the package)."""
    return get_suite(PARITY_SUITES.get(name or "", "imagenet-c"))


# --------------------------------------------------------------------------------------------- feeding draws
class _FedImage:
    """np.random stand-in for the published code: uniforms and normals from fixed arrays."""

    def __init__(self, uniforms: np.ndarray, normals: np.ndarray) -> None:
        self.u, self.z, self.iu, self.iz = uniforms, normals, 0, 0

    def _take(self, which: str, k: int) -> np.ndarray:
        arr, pos = (self.u, self.iu) if which == "u" else (self.z, self.iz)
        if pos + k > len(arr):
            raise RuntimeError("the fed random numbers ran out")
        if which == "u":
            self.iu += k
        else:
            self.iz += k
        return arr[pos : pos + k]

    def uniform(self, low: float = 0.0, high: float = 1.0, size=None):
        k = 1 if size is None else math.prod(np.atleast_1d(size))
        v = low + (high - low) * self._take("u", k)
        return v[0] if size is None else v.reshape(size)

    def normal(self, loc: float = 0.0, scale: float = 1.0, size=None):
        k = 1 if size is None else math.prod(np.atleast_1d(size))
        v = loc + scale * self._take("z", k)
        return v[0] if size is None else v.reshape(size)


class _FedContext:
    """A ``Context`` stand-in whose draws for image i come from image i's fixed arrays."""

    def __init__(
        self, feeds: list[_FedImage], native_size: int, suite: str, elastic_variant: str = "hendrycks"
    ) -> None:
        self.feeds, self.native_size, self.suite = feeds, native_size, suite
        self.seeds = [0] * len(feeds)
        self.device = torch.device("cpu")
        self.elastic_variant = elastic_variant

    def scale(self, height: int, width: int) -> float:
        return min(height, width) / float(self.native_size)

    def __len__(self) -> int:
        return len(self.feeds)

    def _draw(self, which: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        k = math.prod(shape)
        return torch.stack(
            [torch.as_tensor(f._take(which, k), dtype=dtype).reshape(shape) for f in self.feeds]
        )

    def rand(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self._draw("u", shape, dtype)

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self._draw("z", shape, dtype)


def _fed_draws(
    n: int, count: int, seed: int, name: str, severity: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for i in range(n):
        rng = np.random.default_rng(derive_seed(seed, i, name, severity, "fed"))
        out.append((rng.random(count), rng.standard_normal(count)))
    return out


def _run_fed(
    images: torch.Tensor, name: str, severity: int, suite: Suite, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ours and the reference on identical draws: two uint8 batches."""
    n, _, h, w = images.shape
    draws = _fed_draws(n, 2 * (1 << (max(h, w) - 1).bit_length()) ** 2 + 16, seed, name, severity)
    ctx = _FedContext(
        [_FedImage(u, z) for u, z in draws], suite.native_size, suite.name, suite.elastic_variant
    )
    x = images.float() / 255
    ours = CORRUPTIONS.get(name)(x, suite.param(name, severity), ctx)
    ours = (ours.clamp(0, 1) * 255).floor().to(torch.uint8)  # the package truncates (np.uint8)
    fn = reference_function(name)
    ref = []
    hwc = images.permute(0, 2, 3, 1).numpy()
    for i, (u, z) in enumerate(draws):
        with random_source(_FedImage(u, z)):
            ref.append(np.asarray(np.uint8(fn(Image.fromarray(hwc[i]), severity))))
    return ours, torch.from_numpy(np.stack(ref)).permute(0, 3, 1, 2)


# --------------------------------------------------------------------------------------------- comparison
@dataclass
class ParityRow:
    """One (corruption, severity, size) comparison. PSNRs in dB; NaN where not applicable."""

    corruption: str
    severity: int
    size: int
    suite: str
    kind: str  # deterministic | fed | stochastic
    n: int  # images compared per backend (images x repeats for stochastic rows)
    psnr_ours_ref: float
    psnr_ours_ref_min: float
    psnr_ours_clean: float
    psnr_ref_clean: float
    difference: float  # psnr_ours_clean - psnr_ref_clean
    target: str
    passed: bool
    seconds_ours: float
    seconds_ref: float


def kind_of(name: str) -> str:
    """How ``name`` is compared: deterministic, fed or stochastic."""
    if name in DETERMINISTIC:
        return "deterministic"
    return "fed" if name in FED else "stochastic"


def parity_cell(
    images: torch.Tensor,
    name: str,
    severity: int,
    *,
    suite: Suite | None = None,
    repeats: int = 4,
    seed: int = 0,
) -> ParityRow:
    """Compare the two backends on one corruption and severity.

    Args:
        images: uint8 (N, 3, H, W), H and W >= 32.
        repeats: stochastic rows corrupt every image this many times (different sample ids) per backend.
    """
    suite = suite or parity_suite(name)
    kind = kind_of(name)
    n, _, size, _ = images.shape
    nan = float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", SuiteSizeWarning
        )  # the table applied at any size, as imagecorruptions does
        if kind == "stochastic":
            batch = images.repeat(repeats, 1, 1, 1)
            ids = list(range(len(batch)))
            t0 = time.perf_counter()
            ours = corrupt(batch, name, severity, suite=suite, seed=seed, ids=ids)
            t1 = time.perf_counter()
            ref = corrupt_reference(batch, name, severity, seed=seed + 1, ids=ids, suite=suite.name)
            t2 = time.perf_counter()
            p_ours, p_ref = psnr(ours, batch).mean().item(), psnr(ref, batch).mean().item()
            diff = p_ours - p_ref
            return ParityRow(
                name, severity, size, suite.name, kind, len(batch), nan, nan, p_ours, p_ref, diff,
                f"|diff| <= {DIFF_TARGET:g} dB", abs(diff) <= DIFF_TARGET, t1 - t0, t2 - t1,
            )  # fmt: skip
        t0 = time.perf_counter()
        if kind == "fed":
            ours, ref = _run_fed(images, name, severity, suite, seed)
            t1 = t2 = time.perf_counter()
        else:
            ours = corrupt(images, name, severity, suite=suite, seed=seed)
            t1 = time.perf_counter()
            ref = corrupt_reference(images, name, severity, seed=seed, suite=suite.name)
            t2 = time.perf_counter()
    between = psnr(ours, ref)
    p_ours, p_ref = psnr(ours, images).mean().item(), psnr(ref, images).mean().item()
    mean = between.mean().item()
    return ParityRow(
        name, severity, size, suite.name, kind, n, mean, between.min().item(), p_ours, p_ref, p_ours - p_ref,
        f">= {PSNR_TARGET:g} dB", mean >= PSNR_TARGET, t1 - t0, t2 - t1,
    )  # fmt: skip


def run_parity(
    sizes: Sequence[int] = (224, 32),
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    corruptions: Sequence[str] | None = None,
    photos: Sequence[str] = PHOTOS,
    repeats: int = 4,
    seed: int = 0,
    progress: Callable[[ParityRow], None] | None = None,
) -> list[ParityRow]:
    """Every (size, corruption, severity) comparison; ``corruptions`` defaults to all the engine implements."""
    names = list(corruptions) if corruptions is not None else _engine_corruptions()
    unknown = [c for c in names if c not in REFERENCE_CORRUPTIONS]
    if unknown:
        raise ValueError(
            f"unknown corruptions {', '.join(unknown)}; valid: {', '.join(REFERENCE_CORRUPTIONS)}"
        )
    rows = []
    for size in sizes:
        images = load_photos(int(size), photos)
        for name in names:
            for severity in severities:
                row = parity_cell(
                    images, name, int(severity), suite=parity_suite(name), repeats=repeats, seed=seed
                )
                rows.append(row)
                if progress is not None:
                    progress(row)
    return rows


def _engine_corruptions() -> list[str]:
    registered = set(list_corruptions())
    return [c for c in REFERENCE_CORRUPTIONS if c in registered]


# --------------------------------------------------------------------------------------------- output
def write_csv(rows: Sequence[ParityRow], path: str | os.PathLike[str]) -> Path:
    """Write the rows to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [f.name for f in fields(ParityRow)]
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=names)
            writer.writeheader()
            for row in rows:
                d = asdict(row)
                writer.writerow({k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in d.items()})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _fmt(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.1f}"


def format_summary(rows: Sequence[ParityRow]) -> str:
    """A markdown table: one line per (corruption, size), the per-severity values and pass/fail.

    Deterministic / fed lines show PSNR(ours, reference) per severity; stochastic lines show the difference of the
    mean PSNR(corrupted, clean), ours minus reference.
    """
    groups: dict[tuple[str, int], list[ParityRow]] = {}
    for r in rows:
        groups.setdefault((r.corruption, r.size), []).append(r)
    sevs = sorted({r.severity for r in rows})
    head = ["corruption", "size", "kind", "metric"] + [f"s{s}" for s in sevs] + ["target", "result"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (name, size), rs in groups.items():
        by_sev = {r.severity: r for r in rs}
        kind = rs[0].kind
        if kind == "stochastic":
            metric = "dB ours - ref (PSNR vs clean)"
            vals = [(f"{by_sev[s].difference:+.2f}" if s in by_sev else "") for s in sevs]
        else:
            metric = "PSNR(ours, ref) dB"
            vals = [(_fmt(by_sev[s].psnr_ours_ref) if s in by_sev else "") for s in sevs]
        ok = all(r.passed for r in rs)
        lines.append(
            "| "
            + " | ".join([name, str(size), kind, metric, *vals, rs[0].target, "pass" if ok else "FAIL"])
            + " |"
        )
    passed = sum(r.passed for r in rows)
    lines.append("")
    lines.append(f"{passed} / {len(rows)} rows (corruption x severity x size) meet their target.")
    return "\n".join(lines)


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--sizes", type=_ints, default=[224, 32], help="image sizes (default 224,32)")
    p.add_argument("--severities", type=_ints, default=[1, 2, 3, 4, 5])
    p.add_argument(
        "--corruptions", default=None, help="comma-separated names (default: every implemented one)"
    )
    p.add_argument("--photos", type=int, default=len(PHOTOS), help=f"how many photos (1..{len(PHOTOS)})")
    p.add_argument("--repeats", type=int, default=4, help="draws per photo and backend for stochastic rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="reports/parity/parity.csv", help="CSV with every row")
    p.add_argument("--quick", action="store_true", help="3 photos, severities 1,3,5, 2 repeats")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument(
        "--perturbations",
        action="store_true",
        help="compare the -P sequences with the CIFAR-10-P / ImageNet-P generators instead",
    )
    p.add_argument("--p-suites", default="cifar10-p,imagenet-p", help="perturbation suites (--perturbations)")
    return p


def _main_perturbations(args: argparse.Namespace) -> int:
    from benchmarks._parity_p import format_perturbation_table, run_perturbation_parity
    from corruptions.perturbations import list_perturbations

    photos = PHOTOS[: max(1, min(len(PHOTOS), args.photos))]
    if args.quick:
        photos = PHOTOS[:2]
    names = args.corruptions.split(",") if args.corruptions else list_perturbations()
    unknown = [n for n in names if n not in list_perturbations()]
    if unknown:
        print(
            f"unknown perturbations {', '.join(unknown)}; valid: {', '.join(list_perturbations())}",
            file=sys.stderr,
        )
        return 2
    suites = [v for v in args.p_suites.split(",") if v]

    def progress(r) -> None:
        print(f"{r.suite} {r.perturbation} d{r.difficulty} {r.kind}: {r.psnr_min:.1f} / {r.clean_ours:.2f} "
              f"{r.clean_gen:.2f} {'ok' if r.passed else 'FAIL'}", file=sys.stderr)  # fmt: skip

    t0 = time.perf_counter()
    rows = run_perturbation_parity(suites, names, photos, args.seed, progress)
    print(format_perturbation_table(rows))
    print(f"\n{len(rows)} sequences compared in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0 if all(r.passed for r in rows) else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.perturbations:
        return _main_perturbations(args)
    photos = PHOTOS[: max(1, min(len(PHOTOS), args.photos))]
    severities, repeats = args.severities, args.repeats
    if args.quick:
        photos, severities, repeats = PHOTOS[:3], [1, 3, 5], 2
    names = args.corruptions.split(",") if args.corruptions else None
    missing = [c for c in REFERENCE_CORRUPTIONS if c not in _engine_corruptions()]
    if missing and names is None:
        print(f"not implemented by the engine (skipped): {', '.join(missing)}", file=sys.stderr)

    def progress(r: ParityRow) -> None:
        print(
            f"{r.size:>4} {r.corruption:<18} s{r.severity} {r.kind:<13} ours-ref {_fmt(r.psnr_ours_ref):>6} "
            f"clean: ours {r.psnr_ours_clean:6.2f} ref {r.psnr_ref_clean:6.2f}  {'ok' if r.passed else 'FAIL'}",
            file=sys.stderr,
        )

    t0 = time.perf_counter()
    rows = run_parity(args.sizes, severities, names, photos, repeats, args.seed, progress)
    out = write_csv(rows, args.out)
    print(format_summary(rows))
    print(f"\nwrote {out} ({len(rows)} rows) in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0 if all(r.passed for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
