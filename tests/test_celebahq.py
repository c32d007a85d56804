"""CelebA-HQ: folder and LMDB sources give the same tensors and hash, the papers' splits, `ganbench pack`, errors, and
a few training steps of every CelebA-HQ recipe.

No test has CelebA-HQ: each writes a tiny stand-in (a few images whose pixels encode their number) and shrinks the
split layout from 30,000 / 27,000 to 10 / 9 images, so a position off by one shows as a wrong image.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import lmdb
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ganbench.cli import app
from ganbench.data import celebahq as hq
from ganbench.data import load_dataset, output_shape
from ganbench.errors import DataError
from ganbench.metrics import refstats
from ganbench.recipe import DataConfig
from ganbench.store import RunDir

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
TINY = hq.Layout(total=10, train=9)
runner = CliRunner()


@pytest.fixture
def tiny_layout(monkeypatch: pytest.MonkeyPatch) -> hq.Layout:
    monkeypatch.setattr(hq, "PAPER_LAYOUT", TINY)
    return TINY


def image(number: int, side: int) -> np.ndarray:
    """uint8 (side, side, 3): noise seeded by `number`, its red channel's first pixel the number itself."""
    pixels = np.random.default_rng(number).integers(0, 256, (side, side, 3), dtype=np.uint8)
    pixels[0, 0, 0] = number
    return pixels


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def write_folder(folder: Path, count: int = 10, side: int = 16) -> Path:
    """Images 1 … count as 1.png … count.png (lossless: each decodes to `image(i, side)`)."""
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(1, count + 1):
        (folder / f"{number}.png").write_bytes(png_bytes(image(number, side)))
    return folder


def write_official_lmdb(path: Path, files: list[Path]) -> Path:
    """The GN-GAN layout, written here independently of ganbench: key str(i) -> the i-th file's bytes."""
    with lmdb.open(str(path), map_size=1 << 26) as env, env.begin(write=True) as txn:
        for index, file in enumerate(files):
            txn.put(str(index).encode(), file.read_bytes())
    return path


def load(name: str, root: Path, split: str, size: int = 16) -> tuple[torch.Tensor, str]:
    data = load_dataset(DataConfig(name=name, root=str(root), split=split, size=size))
    assert data.tensor.dtype == torch.uint8 and tuple(data.tensor.shape[1:]) == (3, size, size)
    return data.tensor, data.content_hash


def numbers(images: torch.Tensor) -> list[int]:
    return images[:, 0, 0, 0].tolist()


# Splits


def test_the_paper_splits_are_images_1_to_27000_the_last_3000_and_all() -> None:
    assert hq.split_range("celebahq128", "train", 30_000) == range(0, 27_000)
    assert hq.split_range("celebahq128", "test", 30_000) == range(27_000, 30_000)
    assert hq.split_range("celebahq256", "all", 30_000) == range(0, 30_000)
    # The official 128 px LMDB holds the training images only: it serves `train` and refuses the rest in one line.
    assert hq.split_range("celebahq128", "train", 27_000) == range(0, 27_000)
    with pytest.raises(DataError, match=r"holds 27,000 images, the training images alone .* needs all 30,000"):
        hq.split_range("celebahq128", "test", 27_000)
    with pytest.raises(DataError, match="holds 29,999 images, but CelebA-HQ has 30,000"):
        hq.split_range("celebahq256", "all", 29_999)


def test_the_recipes_reference_split_is_the_datasets_declared_one() -> None:
    assert refstats.reference_split("celebahq128") == "test"
    assert refstats.reference_split("celebahq256") == "all"


@pytest.mark.parametrize("source", ["folder", "lmdb"])
def test_a_split_takes_exactly_its_images_in_file_number_order(
    tmp_path: Path, tiny_layout: hq.Layout, source: str
) -> None:
    folder = write_folder(tmp_path / "images")  # 1.png … 10.png: name order would put 10 second
    root = folder if source == "folder" else write_official_lmdb(tmp_path / "db", hq.image_files(folder))
    assert numbers(load("celebahq128", root, "train")[0]) == list(range(1, 10))
    assert numbers(load("celebahq128", root, "test")[0]) == [10]
    every, _ = load("celebahq256", root, "all")
    assert numbers(every) == list(range(1, 11))
    expected = torch.from_numpy(np.stack([image(n, 16) for n in range(1, 11)])).permute(0, 3, 1, 2)
    assert torch.equal(every, expected)


# Folder and LMDB


def test_folder_and_lmdb_of_the_same_images_load_identical_tensors_and_hash(
    tmp_path: Path, tiny_layout: hq.Layout
) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for number in range(1, 11):  # JPEGs of another size: decoding and resizing must agree too
        Image.fromarray(image(number, 40)).save(folder / f"{number}.jpg", quality=90)
    official = write_official_lmdb(tmp_path / "official", hq.image_files(folder))
    packed = hq.pack_lmdb(folder, tmp_path / "packed").path
    for split in hq.SPLITS:
        from_folder = load("celebahq128", folder, split)
        assert from_folder[0].shape[0] == {"train": 9, "test": 1, "all": 10}[split]
        for root in (official, packed):
            tensor, digest = load("celebahq128", root, split)
            assert torch.equal(tensor, from_folder[0]) and digest == from_folder[1]
    assert load("celebahq128", folder, "train")[1] != load("celebahq128", folder, "all")[1]


def test_pack_writes_the_official_layout(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "images", count=12)
    packed = hq.pack_lmdb(folder, tmp_path / "out.lmdb")
    assert (packed.images, packed.path) == (12, tmp_path / "out.lmdb")
    with lmdb.open(str(packed.path), readonly=True, lock=False) as env, env.begin() as txn:
        keys = [key for key, _ in txn.cursor()]
        assert sorted(keys) == sorted(str(i).encode() for i in range(12))
        for index in range(12):  # the file's own bytes, in file-number order
            assert txn.get(str(index).encode()) == (folder / f"{index + 1}.png").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "out.lmdb"]  # no temporary folder left


def test_pack_with_a_size_round_trips_to_what_the_folder_gives_at_that_size(
    tmp_path: Path, tiny_layout: hq.Layout
) -> None:
    folder = write_folder(tmp_path / "images", side=24)
    result = runner.invoke(app, ["pack", "celebahq", str(folder), str(tmp_path / "db"), "--size", "16"])
    assert result.exit_code == 0, result.output
    assert "written:" in result.stdout and "10 images" in result.stdout
    with lmdb.open(str(tmp_path / "db"), readonly=True, lock=False) as env, env.begin() as txn:
        first = Image.open(io.BytesIO(txn.get(b"0")))
        assert (first.format, first.size) == ("PNG", (16, 16))
    for split in hq.SPLITS:
        packed, packed_hash = load("celebahq256", tmp_path / "db", split)
        files, files_hash = load("celebahq256", folder, split)
        assert torch.equal(packed, files) and packed_hash == files_hash


def test_an_interrupted_pack_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_folder(tmp_path / "images", side=24)
    calls = []

    def failing(pixels: np.ndarray) -> bytes:
        calls.append(1)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return png_bytes(pixels)

    monkeypatch.setattr(hq, "encode_png", failing)
    with pytest.raises(OSError, match="No space left"):
        hq.pack_lmdb(folder, tmp_path / "db", size=16, chunk=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]


def test_pack_grows_the_map_when_the_images_outgrow_it(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for number in range(1, 4):  # 3 x 1.9 MB of incompressible PNGs in one chunk: more than a 1 MiB map holds
        pixels = np.random.default_rng(number).integers(0, 256, (800, 800, 3), dtype=np.uint8)
        (folder / f"{number}.png").write_bytes(png_bytes(pixels))
    packed = hq.pack_lmdb(folder, tmp_path / "db", chunk=3, initial_map=1 << 20)
    with lmdb.open(str(packed.path), readonly=True, lock=False) as env, env.begin() as txn:
        assert txn.get(b"2") == (folder / "3.png").read_bytes()


# Errors: one line each


def cli_error(args: list[str]) -> tuple[int, list[str]]:
    """The exit code and the lines of stderr but the progress bar's (its line, or the blank line a stopped bar
    leaves where the console has no width to draw it in)."""
    result = runner.invoke(app, args)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    return result.exit_code, [line for line in lines if line.strip() and not line.startswith("Packing")]


def test_pack_refuses_bad_arguments_in_one_line_with_exit_2(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "images", count=3)
    (tmp_path / "exists").mkdir()
    assert cli_error(["pack", "lsun", str(folder), str(tmp_path / "x")]) == (
        2,
        ["error: pack 'lsun': not a format ganbench packs; choose celebahq"],
    )
    code, lines = cli_error(["pack", "celebahq", str(folder), str(tmp_path / "exists")])
    assert code == 2 and len(lines) == 1 and "already exists; remove it" in lines[0]
    code, lines = cli_error(["pack", "celebahq", str(tmp_path / "nowhere"), str(tmp_path / "y")])
    assert code == 2 and len(lines) == 1 and "is not a directory" in lines[0]
    (folder / "2.png").write_bytes(b"not a png")
    code, lines = cli_error(["pack", "celebahq", str(folder), str(tmp_path / "z")])
    assert code == 2 and len(lines) == 1 and "2.png is not a readable image" in lines[0]
    assert not (tmp_path / "z").exists()
    code, lines = cli_error(["pack", "celebahq", str(folder), str(tmp_path / "w"), "--size", "-1"])
    assert code == 2 and len(lines) == 1 and "--size -1" in lines[0]


def test_a_damaged_or_incomplete_lmdb_is_one_line(tmp_path: Path, tiny_layout: hq.Layout) -> None:
    folder = write_folder(tmp_path / "images")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "data.mdb").write_bytes(b"\0garbage" * 1000)
    with pytest.raises(DataError, match=r"damaged is not a readable LMDB .*ganbench pack celebahq") as err:
        load("celebahq256", damaged, "all")
    assert "\n" not in str(err.value)
    gap = tmp_path / "gap"  # ten entries, but key '4' missing and '10' in its place
    files = hq.image_files(folder)
    with lmdb.open(str(gap), map_size=1 << 26) as env, env.begin(write=True) as txn:
        for index, file in enumerate(files):
            txn.put(str(10 if index == 4 else index).encode(), file.read_bytes())
    with pytest.raises(DataError, match=r"has no key '4'; its 10 entries must be keyed 0 to 9"):
        load("celebahq256", gap, "all")
    with pytest.raises(DataError, match=r"'.*missing' is not a directory"):
        load("celebahq256", tmp_path / "missing", "all")
    short = write_official_lmdb(tmp_path / "short", files[:7])
    with pytest.raises(DataError, match=r"holds 7 images, but CelebA-HQ has 10"):
        load("celebahq256", short, "all")
    (folder / "3.png").write_bytes(b"broken")
    with pytest.raises(DataError, match=r"3.png is not a readable image"):
        load("celebahq256", folder, "all")


def test_without_the_lmdb_package_the_error_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_layout: hq.Layout
) -> None:
    root = write_official_lmdb(tmp_path / "db", hq.image_files(write_folder(tmp_path / "images")))
    monkeypatch.setitem(sys.modules, "lmdb", None)  # import lmdb now raises ImportError
    with pytest.raises(DataError, match=r"need the lmdb package; install it with pip install 'ganbench\[celebahq\]'"):
        load("celebahq256", root, "all")
    code, lines = cli_error(["pack", "celebahq", str(tmp_path / "images"), str(tmp_path / "out")])
    assert code == 2 and len(lines) == 1 and "ganbench[celebahq]" in lines[0]


def test_shapes_are_the_native_sizes_without_reading_files() -> None:
    assert output_shape(DataConfig(name="celebahq128", root="/nowhere")) == (3, 128, 128)
    assert output_shape(DataConfig(name="celebahq256", root="/nowhere", split="all")) == (3, 256, 256)


# Recipes: a few steps each, at reduced width and batch


@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES.glob("celebahq*.toml")))
def test_each_celebahq_recipe_trains_a_few_steps_on_the_cpu(
    tmp_path: Path, tiny_layout: hq.Layout, recipe: str
) -> None:
    root = hq.pack_lmdb(write_folder(tmp_path / "images", side=32), tmp_path / "db").path
    run_dir = tmp_path / "run"
    sets = [
        f"data.root='{root}'",
        "model.g_channels=2",
        "model.d_channels=2",
        "train.batch_size_d=2",
        "train.batch_size_g=2",
        "train.steps=2",
        "train.ema_start=0",
        "train.device='cpu'",
        "train.sample_every=0",
        "eval.every=0",
    ]
    command = ["train", str(RECIPES / recipe), "--run-dir", str(run_dir)]
    for item in sets:
        command += ["--set", item]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    run = RunDir(run_dir)
    assert run.read_run()["step"] == 2
    resolved = run.read_recipe()
    assert (
        resolved.model.arch == f"resnet{resolved.data.size}" and resolved.data.name == f"celebahq{resolved.data.size}"
    )
