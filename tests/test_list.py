"""Registry entries say what they are, and what they say is true; `ganbench list` prints them.

Each declaration is checked against something that does not read it: a net's shapes against what it builds, a
dataset's paper split against the reference-statistics table and the paper recipes, a method's recipe tag and
backbone family against the paper recipe file names, its paper label against the report's tables, its loss family
against compare's loss switch and recipe validation.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ganbench import cli, compare, data, losses, methods, nets
from ganbench import recipe as recipes
from ganbench.config import DataConfig, LossConfig, ModelConfig
from ganbench.errors import RecipeError
from ganbench.metrics import refstats

REPO = Path(__file__).resolve().parent.parent
RECIPES = REPO / "recipes"
REGISTRIES = {"methods": methods.METHODS, "nets": nets.NETS, "datasets": data.DATASETS, "losses": losses.LOSSES}
PAPER_RECIPE = re.compile(r"(?P<data>[a-z0-9]+)_(?P<family>[a-z]+)_(?P<tag>[a-z]+)(?P<cr>_cr)?")


def paper_recipes() -> list[tuple[re.Match[str], recipes.Recipe]]:
    found = [(PAPER_RECIPE.fullmatch(path.stem), path) for path in sorted(RECIPES.glob("*.toml"))]
    return [(match, recipes.load(path)) for match, path in found if match]


PAPER_RECIPES = paper_recipes()


def test_the_paper_recipes_are_found() -> None:
    names = [recipe.name for _, recipe in PAPER_RECIPES]
    # CIFAR-10 and STL-10 x 2 backbones x (5 methods with and without CR + LGAN)
    assert sum(name.startswith(("cifar10_cnn_", "cifar10_resnet_", "stl10_")) for name in names) == 44
    # CelebA-HQ 128 and 256 px x ResNet x (SN, GN, PGN, GraN)
    assert sum(name.startswith("celebahq") for name in names) == 8
    # class-conditional CIFAR-10 x BigGAN x (SN, GN, PGN, GraN with and without CR)
    assert sum(name.startswith("cifar10_biggan_") for name in names) == 8


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_every_entry_describes_itself_in_the_same_columns(kind: str) -> None:
    rows = [entry.summary() for entry in REGISTRIES[kind].entries()]
    assert [row["name"] for row in rows] == REGISTRIES[kind].names()
    for entry, row in zip(REGISTRIES[kind].entries(), rows, strict=True):
        assert list(row) == list(rows[0])
        assert entry.label and entry.description and "\n" not in entry.description


# nets


@pytest.mark.parametrize("arch", nets.NETS.names())
def test_a_net_builds_exactly_the_shapes_it_declares(arch: str) -> None:
    spec = nets.NETS.get(arch)
    model = ModelConfig(arch=arch, z_dim=4, g_channels=8, d_channels=8, num_classes=3 if spec.conditional else 0)
    labels = (torch.tensor([0, 2]),) if spec.conditional else ()  # a class-conditional net: G(z, y), D(x, y)
    for shape in spec.shapes:
        generator, discriminator = nets.build_nets(model, shape)
        fake = generator(torch.randn(2, 4), *labels)
        assert tuple(fake.shape[1:]) == shape
        assert discriminator(fake, *labels).shape == (2, 1)
    others = {shape for other in nets.NETS.entries() for shape in other.shapes} - set(spec.shapes)
    for shape in others:
        with pytest.raises(RecipeError, match="model.arch"):
            nets.check_compatible(model, shape)


def test_paper_recipe_names_carry_each_net_family() -> None:
    for match, recipe in PAPER_RECIPES:
        spec = nets.NETS.get(recipe.model.arch)
        assert (spec.family, spec.paper != "") == (match["family"], True), recipe.name


# datasets


@pytest.mark.parametrize("name", data.DATASETS.names())
def test_a_dataset_paper_split_is_the_reference_statistics_split(name: str) -> None:
    spec = data.DATASETS.get(name)
    if spec.paper_split:
        assert spec.paper_split in spec.splits and spec.reference_split in ("", *spec.splits)
        assert refstats.reference_split(name) == (spec.reference_split or spec.paper_split)
    else:
        assert name not in refstats.PAPER_SPLITS


def test_paper_recipes_train_on_the_paper_split_the_papers_compare_against() -> None:
    protocols = tomllib.loads((REPO / "ganbench" / "report" / "papers.toml").read_text())["protocols"]
    for match, recipe in PAPER_RECIPES:
        spec = data.DATASETS.get(recipe.data.name)
        assert recipe.data.name == match["data"]
        reference = refstats.reference_split(recipe.data.name, recipe.eval.ref_split)
        assert recipe.data.split == spec.paper_split, recipe.name
        assert reference == (spec.reference_split or spec.paper_split), recipe.name
        assert protocols[recipe.data.name].get("ref_split", reference) == reference, recipe.name


def test_a_dataset_shape_column_is_its_loaded_shape() -> None:
    for name in ("ring8", "shapes"):  # the offline sets: loaded for real
        loaded = data.load_dataset(DataConfig(name=name, num_samples=4))
        assert data.DATASETS.get(name).summary()["shape"] == "x".join(str(n) for n in loaded.tensor.shape[1:])


# methods and losses


def test_paper_recipe_names_carry_each_method_tag() -> None:
    for match, recipe in PAPER_RECIPES:
        assert methods.METHODS.get(recipe.method.name).tag == match["tag"], recipe.name
        assert (recipe.method.cr_lambda > 0) == (match["cr"] is not None)


@pytest.mark.parametrize("name", methods.METHODS.names())
def test_a_method_paper_label_is_the_report_label(name: str) -> None:
    from ganbench.report.tables import method_label

    assert methods.METHODS.get(name).paper == method_label(name)


@pytest.mark.parametrize("name", methods.METHODS.names())
def test_a_method_loss_family_is_what_compare_switches_to_and_validation_enforces(name: str) -> None:
    method = methods.METHODS.get(name)
    family = {entry.name for entry in losses.LOSSES.entries() if entry.family == method.loss_family}
    assert bool(method.loss_family) == bool(family) == bool(method.default_loss)
    if method.loss_family:
        assert method.default_loss in family
    for loss in losses.LOSSES.names():
        fits = not method.loss_family or loss in family
        assert compare.needed_loss(name, loss) == (None if fits else method.default_loss), loss
        text = f'[method]\nname = "{name}"\n[loss]\nname = "{loss}"\n'
        if fits or not method.loss_enforced:
            recipes.loads(text)
        else:
            with pytest.raises(RecipeError, match=f"loss.name: method {name} uses the {method.loss_family} loss"):
                recipes.loads(text)


@pytest.mark.parametrize("name", losses.LOSSES.names())
def test_the_lgan_family_is_the_losses_with_a_psi_max_generator_loss(name: str) -> None:
    entry = losses.LOSSES.get(name)
    if entry.family == "LGAN":
        losses.build_loss(LossConfig(name=name, lgan_psi_max=True))
    else:
        with pytest.raises(RecipeError, match="loss.lgan_psi_max"):
            losses.build_loss(LossConfig(name=name, lgan_psi_max=True))


# ganbench list


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setattr(cli.console, "width", 400)  # whole rows, whatever terminal runs the tests
    return CliRunner()


def table_rows(output: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in output.splitlines() if line.startswith("│")]


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_list_prints_one_row_per_registered_entry(wide: CliRunner, kind: str) -> None:
    result = wide.invoke(cli.app, ["list", kind])
    assert result.exit_code == 0, result.output
    rows = table_rows(result.stdout)
    assert [row[0] for row in rows] == REGISTRIES[kind].names()
    assert [row[1] for row in rows] == [entry.label for entry in REGISTRIES[kind].entries()]


def test_list_recipes_shows_every_shipped_recipe_once(wide: CliRunner) -> None:
    result = wide.invoke(cli.app, ["list", "recipes"])
    assert result.exit_code == 0, result.output
    files = sorted(row[1] for row in table_rows(result.stdout))
    shipped = sorted(str(p.relative_to(RECIPES)) for p in [*RECIPES.glob("*.toml"), *RECIPES.glob("variants/*.toml")])
    assert files == shipped and "variants/stl10_cnn_gn_500k.toml" in files
    gn_cr = next(row for row in table_rows(result.stdout) if row[0] == "cifar10_cnn_gn_cr")
    assert gn_cr[2:] == ["cifar10 train", "cnn32", "gn + CR", "bce", "200000"]


def test_list_metrics_shows_image_and_point_metrics(wide: CliRunner) -> None:
    result = wide.invoke(cli.app, ["list", "metrics"])
    assert result.exit_code == 0, result.output
    assert {row[0]: row[1] for row in table_rows(result.stdout)} == {
        "fid": "images",
        "is": "images",
        "kid": "images",
        "pr": "images",
        "modes": "2-D points",
    }


def test_list_everything_and_refuse_an_unknown_kind(wide: CliRunner) -> None:
    result = wide.invoke(cli.app, ["list"])
    assert result.exit_code == 0, result.output
    titles = [line.strip() for line in result.stdout.splitlines() if line.strip() in cli.LIST_KINDS]
    assert titles == list(cli.LIST_KINDS)
    bad = wide.invoke(cli.app, ["list", "gans"])
    assert bad.exit_code == 2
    assert bad.stderr.strip().splitlines() == [
        "error: list 'gans': not something ganbench lists; choose one of methods, nets, datasets, losses, metrics, "
        "recipes"
    ]
