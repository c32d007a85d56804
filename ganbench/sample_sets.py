"""Sample sets as files. `export_samples` writes the exact images `ganbench eval` scores for a checkpoint (the same
codes, labels, BatchNorm mode, generator and uint8 rounding, drawn through the evaluation's own `Sampling`);
`score_images` scores images made elsewhere as a run's (or recipe's) samples would be scored, into an external
entry: a run-like directory (recipe.toml, run.json with an `external` table, metrics.parquet, no checkpoints).

Formats. An .npz holds the images as one uint8 array (N, H, W, 3) under the key "arr_0": what `np.savez(path,
images)` writes and what OpenAI's guided-diffusion evaluator reads (it takes class labels, as a conditional G's are
exported here, from "arr_1"). A folder holds one RGB PNG per image, 000000.png, 000001.png, ... in sample order: what
torch-fidelity, pytorch-fid and the TTUR FID code read (their .npz files are statistics, mu and sigma, not images).
Reading takes the array "arr_0", else "images", else a file's only array; and every image file of a folder, hidden
ones skipped, in the order of their paths.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from ganbench import data
from ganbench.checkpoints import load_generator
from ganbench.data.folder import EXTENSIONS, UNREADABLE_IMAGE
from ganbench.devices import resolve_device
from ganbench.errors import MetricError, RunDirError
from ganbench.evaluation import Evaluation, Sampling, already_scored, checkpoint_names
from ganbench.files import atomic_write, output_problem
from ganbench.metrics.compute import MetricSettings, check_sample_counts, requested_metrics
from ganbench.progress import NullProgress, Progress
from ganbench.selection import selected_generator
from ganbench.store import EXTERNAL, ExternalInfo, RunDir

NPZ_KEY = "arr_0"
LABELS_KEY = "arr_1"
READ_KEYS = (NPZ_KEY, "images")  # the array an .npz of images is read from, in this order; else its only array
GENERATOR_CHOICES = ("selected", "ema", "raw")
EXTERNAL_FOLDER = "external"  # external entries go to RESULTS/external/NAME
_FIX_IMAGES = "uint8 images (N, H, W, 3), RGB"


# ----------------------------------------------------------------------------------------------------
# Export: the samples `ganbench eval` scores.


@dataclass(frozen=True)
class Exported:
    """What `export_samples` wrote."""

    path: Path
    count: int
    checkpoint: str  # the label eval gives its rows: best, last, step-N
    step: int
    generator: str  # ema or raw
    bn_mode: str
    labels: bool  # whether class labels were written beside the images (a conditional G, .npz only)


def export_samples(
    run: RunDir,
    out: Path,
    *,
    checkpoint: str = "best",
    generator: str = "selected",
    num: int | None = None,
    bn_mode: str | None = None,
    device: str = "auto",
    progress: Progress | None = None,
) -> Exported:
    """Write the `num` samples (default the recipe's eval.num_samples) that `ganbench eval` scores for one
    checkpoint of `run` to `out`: an .npz file, or a folder of PNGs for any other path."""
    run.require()
    recipe = run.read_recipe()
    if data.DATASETS.get(recipe.data.name).kind == "points":
        raise MetricError(f"{run.root}: a run on the 2-D point set {recipe.data.name}; its samples are not images")
    if checkpoint.strip() == "all":
        raise MetricError("--checkpoint all: export one checkpoint at a time: best, last or a step number")
    if num is not None and num < 1:
        raise MetricError(f"--num {num}: must be at least 1")
    kind = generator_kind(recipe, generator, run.root)
    name = checkpoint_names(run, checkpoint)[0]
    sampling = Sampling.of(recipe, num_samples=num, bn_mode=bn_mode)
    npz = out.suffix.lower() == ".npz"
    _check_new(out, folder=not npz)
    where = resolve_device(device, key="--device", error=MetricError)
    model, step = load_generator(run, name, ema=kind == "ema", map_location=where)
    shape = data.output_shape(recipe.data)
    progress = progress or NullProgress()
    progress.start(f"{kind} G step {step}: samples", sampling.num_samples)
    try:
        batches = _nhwc(sampling.images(model, where), shape, recipe.model.arch, progress)
        labels = sampling.labels()
        if npz:
            _write_npz(out, batches, (sampling.num_samples, shape[1], shape[2], 3), labels)
        else:
            _write_pngs(out, batches, sampling.num_samples)
    finally:
        progress.finish()
    label = f"step-{step}" if name.isdigit() else name
    return Exported(out, sampling.num_samples, label, step, kind, sampling.bn_mode, npz and labels is not None)


def generator_kind(recipe: Any, choice: str, where: Path) -> str:
    """ema or raw: `choice` (selected, ema or raw) for a run of `recipe`; "selected" is the one a report shows."""
    if choice not in GENERATOR_CHOICES:
        raise MetricError(f"--generator {choice}: choose one of {', '.join(GENERATOR_CHOICES)}")
    has_ema = recipe.train.ema_decay > 0
    if choice == "ema" and not has_ema:
        raise RunDirError(
            f"{where}: the run has no EMA generator (trained with train.ema_decay = 0); use --generator raw"
        )
    return selected_generator(recipe.eval.select, has_ema) if choice == "selected" else choice


def _check_new(out: Path, *, folder: bool) -> None:
    """Refuse an output that exists (never overwritten) or cannot be written."""
    option = f"--out {out}"
    if out.is_dir() and folder and not any(out.iterdir()):
        return
    if os.path.lexists(out):
        raise MetricError(f"{option}: exists; delete it or give another path (samples are never written over)")
    problem = output_problem(out, folder=folder)
    if problem:
        raise MetricError(f"{option}: {problem}; give another path")


def _nhwc(
    batches: Iterator[torch.Tensor], shape: tuple[int, ...], arch: str, progress: Progress
) -> Iterator[np.ndarray]:
    for batch in batches:
        if batch.ndim != 4 or tuple(batch.shape[1:]) != tuple(shape):
            raise MetricError(f"{arch}: the generator gives {tuple(batch.shape)}, not images of shape {shape}")
        progress.advance(len(batch))
        yield batch.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def _write_npz(path: Path, batches: Iterator[np.ndarray], shape: tuple[int, ...], labels: torch.Tensor | None) -> None:
    """An .npz as np.savez writes it (stored, not compressed), the images streamed into it batch by batch."""

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            with archive.open(f"{NPZ_KEY}.npy", "w", force_zip64=True) as member:
                header = {"descr": np.dtype(np.uint8).str, "fortran_order": False, "shape": shape}
                np.lib.format.write_array_header_1_0(member, header)
                for batch in batches:
                    member.write(batch.tobytes())
            if labels is not None:
                with archive.open(f"{LABELS_KEY}.npy", "w") as member:
                    np.lib.format.write_array(member, labels.numpy().astype(np.int64))

    atomic_write(path, write)


def _write_pngs(folder: Path, batches: Iterator[np.ndarray], count: int) -> None:
    """One PNG per image, numbered from 0 in sample order, written into a temp folder renamed into place at the end."""
    digits = max(6, len(str(count - 1)))
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        index = 0
        for batch in batches:
            for image in batch:
                Image.fromarray(image).save(tmp / f"{index:0{digits}d}.png")
                index += 1
        if folder.is_dir():  # an empty folder given as the destination
            folder.rmdir()
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ----------------------------------------------------------------------------------------------------
# Import: images made elsewhere.


@dataclass(frozen=True)
class ImageSet:
    """Images in a file or folder, checked: how many, their size, and the sha256 of their files' bytes."""

    path: Path
    count: int
    height: int
    width: int
    sha256: str
    key: str = ""  # the .npz array holding them
    files: tuple[Path, ...] = ()  # a folder's images, in order

    def batches(self, size: int) -> Iterator[torch.Tensor]:
        """The images as uint8 (n, 3, H, W) tensors of `size` at most, in order."""
        if self.files:
            for start in range(0, self.count, size):
                arrays = [_read_image(path, self) for path in self.files[start : start + size]]
                yield torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
            return
        per_image = self.height * self.width * 3
        with zipfile.ZipFile(self.path) as archive, archive.open(f"{self.key}.npy") as member:
            _read_header(member)
            for start in range(0, self.count, size):
                n = min(size, self.count - start)
                raw = _read_exactly(member, n * per_image, self)
                array = np.frombuffer(raw, np.uint8).reshape(n, self.height, self.width, 3)
                yield torch.from_numpy(array.copy()).permute(0, 3, 1, 2).contiguous()


def open_images(path: Path) -> ImageSet:
    """The images of an .npz file or a folder, checked before anything is scored (one clear MetricError if not)."""
    if path.is_dir():
        return _open_folder(path)
    if not path.exists():
        raise MetricError(f"--images {path}: no such file or folder")
    if path.suffix.lower() != ".npz":
        raise MetricError(f"--images {path}: not an .npz file or a folder of images; give {_FIX_IMAGES} as either")
    return _open_npz(path)


def _open_npz(path: Path) -> ImageSet:
    option = f"--images {path}"
    try:
        with zipfile.ZipFile(path) as archive:
            arrays = [name.removesuffix(".npy") for name in archive.namelist() if name.endswith(".npy")]
            key = next((k for k in READ_KEYS if k in arrays), arrays[0] if len(arrays) == 1 else None)
            if key is None:
                found = ", ".join(arrays) or "none"
                raise MetricError(
                    f"{option}: which array holds the images? arrays {found}; name it {NPZ_KEY} (np.savez's first)"
                )
            with archive.open(f"{key}.npy") as member:
                shape, fortran, dtype = _read_header(member)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise MetricError(f"{option}: not a readable .npz file ({err}); give {_FIX_IMAGES}") from None
    if dtype != np.uint8:
        raise MetricError(
            f"{option}: array {key} holds {dtype} values, not uint8; round [0, 1] images to uint8 as "
            "(x * 255 + 0.5) clipped to 0..255"
        )
    if len(shape) != 4 or shape[-1] != 3:
        hint = "; channels first? transpose it to (N, H, W, 3)" if len(shape) == 4 and shape[1] == 3 else ""
        raise MetricError(f"{option}: array {key} has shape {shape}, not (N, H, W, 3){hint}")
    if fortran:
        raise MetricError(f"{option}: array {key} is stored in Fortran order; save np.ascontiguousarray(images)")
    if shape[0] == 0:
        raise MetricError(f"{option}: array {key} holds no images")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return ImageSet(path, int(shape[0]), int(shape[1]), int(shape[2]), digest.hexdigest(), key=key)


def _read_header(member: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(member)
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = reader(member)
    return tuple(shape), bool(fortran), dtype


def _read_exactly(member: IO[bytes], size: int, images: ImageSet) -> bytes:
    raw = member.read(size)
    if len(raw) != size:
        raise MetricError(f"--images {images.path}: array {images.key} is truncated (fewer bytes than its shape)")
    return raw


def _open_folder(folder: Path) -> ImageSet:
    option = f"--images {folder}"
    files = []
    for path in sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder).as_posix()):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if path.suffix.lower() not in EXTENSIONS:
            raise MetricError(
                f"{option}: {relative.as_posix()} is not an image ({', '.join(EXTENSIONS)}); the folder must hold "
                "only the images to score"
            )
        files.append(path)
    if not files:
        raise MetricError(f"{option}: holds no images ({', '.join(EXTENSIONS)})")
    digest = hashlib.sha256()
    size: tuple[int, int] | None = None
    for path in files:
        content = path.read_bytes()
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + content)
        try:
            with Image.open(io.BytesIO(content)) as image:  # the bytes just hashed, not a second read
                found = image.size
        except UNREADABLE_IMAGE as err:
            raise MetricError(f"{option}: {path.relative_to(folder)} is not a readable image ({err})") from None
        if size is None:
            size = found
        elif found != size:
            raise MetricError(
                f"{option}: {path.relative_to(folder)} is {found[0]}x{found[1]} pixels, the first image "
                f"{size[0]}x{size[1]}; every image must have the same size"
            )
    assert size is not None
    width, height = size
    return ImageSet(folder, len(files), height, width, digest.hexdigest(), files=tuple(files))


def _read_image(path: Path, images: ImageSet) -> np.ndarray:
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    except UNREADABLE_IMAGE as err:
        raise MetricError(f"--images {images.path}: {path.name} is not a readable image ({err})") from None
    if array.shape != (images.height, images.width, 3):
        raise MetricError(f"--images {images.path}: {path.name} changed while it was read")
    return array


def read_like(like: Path) -> Any:
    """The recipe whose evaluation scores external images: a run directory's, or a recipe file's."""
    from ganbench import recipe as recipes

    if like.is_dir():
        return RunDir(like).require().read_recipe()
    if not like.exists():
        raise MetricError(f"--like {like}: no such run directory or recipe file")
    if like.suffix.lower() != ".toml":
        raise MetricError(f"--like {like}: give a run directory or a recipe .toml")
    return recipes.load(like)


def score_images(
    images: Path,
    like: Path,
    name: str,
    results: Path = Path("results"),
    *,
    metrics: list[str] | None = None,
    backend: str | None = None,
    inception_weights: str | None = None,
    ref_stats: str | None = None,
    device: str = "auto",
    force: bool = False,
    settings: MetricSettings | None = None,
    progress: Progress | None = None,
) -> tuple[RunDir, pd.DataFrame]:
    """Score the images of `images` as the samples of `like` (a run directory or recipe) are scored, into the
    external entry RESULTS/external/NAME; return it and the new rows (none when these images are already scored
    under the same protocol, unless `force`)."""
    if not name or name != Path(name).name or name.startswith("."):
        raise MetricError(f"--name {name!r}: give a plain folder name for the entry (no '/', not starting with '.')")
    recipe = read_like(like)
    if data.DATASETS.get(recipe.data.name).kind == "points":
        raise MetricError(f"--like {like}: a recipe of the 2-D point set {recipe.data.name}; only images are scored")
    found = open_images(images)
    _, height, width = data.output_shape(recipe.data)
    if (found.height, found.width) != (height, width):
        raise MetricError(
            f"--images {images}: {found.width}x{found.height} images, but the samples of {like} are "
            f"{width}x{height}; give images of the size its reference statistics are computed at"
        )
    settings = settings or MetricSettings()
    families = requested_metrics(metrics if metrics is not None else list(recipe.eval.metrics))
    check_sample_counts(families, found.count, settings, more="give more images")
    entry = RunDir(results / EXTERNAL_FOLDER / name)
    _check_entry(entry, found)
    evaluation = Evaluation(
        recipe,
        device,
        metrics=families,
        num_samples=found.count,
        backend=backend,
        inception_weights=inception_weights,
        ref_stats=ref_stats,
        settings=settings,
        progress=progress,
    )
    existing = entry.read_metrics() if entry.exists() else pd.DataFrame()
    todo = [
        family
        for family in evaluation.families
        if force or not already_scored(existing, 0, EXTERNAL, family, evaluation.fingerprint(EXTERNAL, family))
    ]
    if not todo:
        return entry, pd.DataFrame()
    rows = evaluation.external_rows(found.batches(recipe.eval.batch_size), todo)
    with entry.lock("ganbench eval --images"):  # metrics.parquet has one writer at a time
        _check_entry(entry, found)
        if not entry.exists():
            entry.write_recipe(recipe)
            info = ExternalInfo(images=str(images), sha256=found.sha256, count=found.count, like=str(like))
            entry.write_run({"name": name, "status": "finished", "step": 0, "steps": 0, "external": info})
        entry.append_metrics(rows)
    return entry, pd.DataFrame(rows)


def _check_entry(entry: RunDir, images: ImageSet) -> None:
    """Refuse to add rows to a folder that is not an external entry of these same images."""
    if entry.exists():
        external = entry.read_run().get("external")
        if external is None:
            raise RunDirError(f"{entry.root}: a run directory, not an external entry; give another --name")
        if external.get("sha256") != images.sha256:
            raise RunDirError(
                f"{entry.root}: an external entry of other images ({external.get('images')}); give another --name "
                "or delete it"
            )
    elif entry.root.is_dir() and any(p.name != ".lock" for p in entry.root.iterdir()):
        raise RunDirError(f"{entry.root}: exists and is not an external entry; give another --name")
    elif os.path.lexists(entry.root) and not entry.root.is_dir():
        raise RunDirError(f"{entry.root}: is a file; give another --name")
