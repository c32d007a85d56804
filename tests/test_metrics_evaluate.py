"""Evaluation end to end on run directories made here: rows, skip-if-scored, --force, in-training rows, and the
numbers checked against the reference implementations on the same features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_fid.fid_score import calculate_frechet_distance
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric
from torchvision.utils import save_image

from ganbench import data
from ganbench.errors import MetricError
from ganbench.evaluation import SAMPLE_SEED, TrainingEvaluator, evaluate_generator, evaluate_run, generate_images
from ganbench.metrics.compute import MetricSettings, quantize_images
from ganbench.metrics.inception import build_extractor
from ganbench.metrics.refstats import RefStats, reference_statistics, save_npz
from ganbench.metrics.twod import mode_quality
from ganbench.nets import build_nets
from ganbench.recipe import DataConfig, EvalConfig, ModelConfig, Recipe, TrainConfig
from ganbench.store import METRIC_COLUMNS, RunDir
from ganbench.train import checkpoint
from tests.conftest import TRUNK_WIDTH
from tests.test_metrics_inception import no_downloads, save_tiny_trunk  # noqa: F401  (autouse fixture)

SMALL = MetricSettings(is_splits=2, kid_subsets=5, kid_subset_size=20, pr_k=3)


def points_recipe() -> Recipe:
    return Recipe(
        name="tiny-points",
        data=DataConfig(name="ring8", num_samples=500),
        model=ModelConfig(arch="mlp", z_dim=4, g_channels=16, d_channels=16),
        train=TrainConfig(steps=30),
        eval=EvalConfig(num_samples=400, batch_size=128),
    )


def image_recipe(metrics: list[str] | None = None) -> Recipe:
    return Recipe(
        name="tiny-images",
        data=DataConfig(name="shapes", num_samples=48, size=32),
        model=ModelConfig(arch="cnn32", z_dim=8, g_channels=4, d_channels=4),
        train=TrainConfig(steps=20),
        eval=EvalConfig(num_samples=40, batch_size=16, metrics=metrics or ["fid", "kid", "pr"]),
    )


def make_run(root: Path, recipe: Recipe, steps: tuple[int, ...] = (10, 20, 30)) -> RunDir:
    """A run directory as the trainer leaves it: recipe.toml, run.json, step-N.pt and last.pt."""
    run = RunDir(root)
    root.mkdir(parents=True)
    run.recipe_path.write_text(recipe.to_toml())
    run.write_run({"name": recipe.name, "status": "finished", "step": steps[-1]})
    generator, discriminator = build_nets(recipe.model, data.output_shape(recipe.data))
    ema = build_nets(recipe.model, data.output_shape(recipe.data))[0]
    for step in steps:
        torch.manual_seed(step)
        for module in (generator, ema):
            for p in module.parameters():
                p.data.add_(0.1 * torch.randn_like(p))
        state = {"step": step, "G": generator.state_dict(), "G_ema": ema.state_dict(), "D": discriminator.state_dict()}
        checkpoint.save(run.checkpoint_path(step), state)
    checkpoint.save(run.checkpoint_path("last"), state)
    return run


WIDTH = TRUNK_WIDTH  # the pool width of the `trunk` fixture's stand-in


# sampling


def test_quantization_rounds_as_saving_a_png_does(tmp_path: Path) -> None:
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2.2 - 1.1  # some values outside [-1, 1]
    x[0, 0, 0, :4] = torch.tensor([-1.0, 1.0, 1 / 255 - 1, 0.0])
    save_image((x.clamp(-1, 1) + 1) / 2, tmp_path / "x.png")
    png = torch.from_numpy(np.array(Image.open(tmp_path / "x.png"))).permute(2, 0, 1)
    assert torch.equal(quantize_images(x)[0], png)


def test_samples_are_seeded_and_independent_of_the_batch_size() -> None:
    recipe = image_recipe()
    generator = build_nets(recipe.model, data.output_shape(recipe.data))[0].train()
    by_3 = torch.cat(list(generate_images(generator, 10, 8, 3, "cpu", seed=5, quantize=False)))
    by_10 = torch.cat(list(generate_images(generator, 10, 8, 10, "cpu", seed=5, quantize=False)))
    torch.testing.assert_close(by_3, by_10, rtol=1e-5, atol=1e-6)
    assert generator.training  # the mode it came in with
    assert by_3.min() >= 0 and by_3.max() <= 1
    other_seed = torch.cat(list(generate_images(generator, 10, 8, 10, "cpu", seed=6, quantize=False)))
    assert not torch.allclose(by_10, other_seed)
    uint8 = torch.cat(list(generate_images(generator, 10, 8, 4, "cpu", seed=5)))
    assert uint8.dtype == torch.uint8 and torch.equal(uint8, quantize_images(by_10 * 2 - 1))


# 2-D point sets


def test_evaluate_run_on_points_appends_skips_and_forces(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", points_recipe())
    rows = evaluate_run(run, checkpoints="all", device="cpu")
    assert sorted(rows["step"].unique()) == [10, 20, 30]  # last.pt repeats step 30 and is not scored twice
    assert set(rows["checkpoint"]) == {"step-10", "step-20", "step-30"}
    assert set(rows["metric"]) == {"modes_covered", "hq_percent"} and set(rows["generator"]) == {"ema"}
    assert len(run.read_metrics()) == 6

    # the values are mode_quality's on the seeded samples of that checkpoint's EMA generator
    from ganbench.train.checkpoint import load_generator

    generator, _ = load_generator(run, 20, ema=True)
    samples = torch.cat(list(generate_images(generator, 400, 4, 128, "cpu", SAMPLE_SEED)))
    dataset = data.load_dataset(points_recipe().data)
    expected = mode_quality(samples, dataset.modes, dataset.mode_std)
    got = rows[rows["step"] == 20].set_index("metric")["value"]
    assert got["modes_covered"] == expected["modes_covered"] and got["hq_percent"] == expected["hq_percent"]

    assert evaluate_run(run, checkpoints="all", device="cpu").empty  # everything already scored
    assert evaluate_run(run, checkpoints="last", device="cpu").empty  # step 30 under the same fingerprint
    forced = evaluate_run(run, checkpoints="last", force=True, device="cpu")
    assert len(forced) == 2 and set(forced["checkpoint"]) == {"last"}
    assert (
        forced.set_index("metric")["value"].to_dict() == rows[rows["step"] == 30].set_index("metric")["value"].to_dict()
    )  # deterministic
    other_protocol = evaluate_run(run, checkpoints="20", num_samples=800, device="cpu")  # n_fake differs
    assert len(other_protocol) == 2 and set(other_protocol["checkpoint"]) == {"step-20"}
    raw = evaluate_run(run, checkpoints="20", ema=False, device="cpu")
    assert set(raw["generator"]) == {"raw"}
    metrics = run.read_metrics()
    assert len(metrics) == 6 + 2 + 2 + 2
    assert metrics.groupby(["step", "generator", "n_fake"])["fingerprint"].nunique().max() == 1


def test_image_metrics_are_refused_for_points(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", points_recipe(), steps=(10,))
    with pytest.raises(MetricError, match="2-D point set"):
        evaluate_run(run, checkpoints="last", metrics=["fid"], device="cpu")


def test_training_evaluator_scores_raw_and_ema(tmp_path: Path) -> None:
    recipe = points_recipe()
    run = make_run(tmp_path / "run", recipe, steps=(10,))
    generator = build_nets(recipe.model, data.output_shape(recipe.data))[0]
    evaluator = TrainingEvaluator(recipe, run, torch.device("cpu"))
    rows = evaluator(10, {"raw": generator, "ema": generator})
    assert len(rows) == 4 and {r["generator"] for r in rows} == {"raw", "ema"}
    assert {r["checkpoint"] for r in rows} == {"in-training"}
    by_kind = {r["generator"]: r for r in rows if r["metric"] == "hq_percent"}
    assert by_kind["raw"]["value"] == by_kind["ema"]["value"]  # the same network and the same latent codes
    assert by_kind["raw"]["fingerprint"] != by_kind["ema"]["fingerprint"]  # the generator kind is protocol
    assert all(list(row) == list(METRIC_COLUMNS) for row in rows)  # the run-directory contract's columns


# images, with the tiny TorchScript trunk


def test_image_run_scores_match_the_reference_implementations(tmp_path: Path, trunk: str) -> None:
    recipe = image_recipe()
    run = make_run(tmp_path / "run", recipe, steps=(10, 20))
    rows = evaluate_run(
        run, checkpoints="last", inception_weights=trunk, settings=SMALL, device="cpu", bn_mode="running"
    )
    assert set(rows["metric"]) == {"fid", "kid_mean", "kid_std", "precision", "recall"}
    assert (rows["extractor"] == "torchscript-fid-trunk").all() and (rows["weights"] == "trunk.pt").all()
    assert (rows["n_fake"] == 40).all() and (rows["n_real"] == 48).all() and (rows["ref_split"] == "train").all()
    assert (rows["quantize"]).all() and (rows["resize"] == "torch-bilinear-299").all()
    assert rows["fingerprint"].nunique() == 3  # fid, kid and pr carry their own settings

    # The same numbers by another road: features computed here, metrics by pytorch-fid and torch-fidelity.
    from ganbench.train.checkpoint import load_generator

    extractor = build_extractor(weights=trunk)
    generator, _ = load_generator(run, "last", ema=True)
    images = torch.cat(list(generate_images(generator, 40, 8, 7, "cpu", SAMPLE_SEED)))
    fake = extractor.features(images)["pool"].double()
    real = extractor.features(data.load_dataset(recipe.data).tensor)["pool"].double()
    values = rows.set_index("metric")["value"]
    reference_fid = calculate_frechet_distance(
        fake.mean(0).numpy(),
        np.cov(fake.numpy(), rowvar=False),
        real.mean(0).numpy(),
        np.cov(real.numpy(), rowvar=False),
    )
    assert values["fid"] == pytest.approx(reference_fid, rel=1e-4)
    kid = kid_features_to_metric(
        fake, real, kid_subsets=5, kid_subset_size=20, kid_degree=3, kid_gamma=None, kid_coef0=1,
        kid_kernel="poly", verbose=False, rng_seed=2020,
    )  # fmt: skip
    assert values["kid_mean"] == pytest.approx(kid["kernel_inception_distance_mean"], rel=1e-3, abs=1e-9)
    prc = prc_features_to_metric(
        fake.float(), real.float(), prc_neighborhood=3, prc_batch_size=10000, save_cpu_ram=False
    )
    assert values["precision"] == pytest.approx(prc["precision"], abs=1 / 40)
    assert values["recall"] == pytest.approx(prc["recall"], abs=1 / 48)

    again = dict(checkpoints="last", inception_weights=trunk, settings=SMALL, device="cpu")
    assert evaluate_run(run, **again, bn_mode="running").empty  # already scored under this protocol
    assert not evaluate_run(run, **again, bn_mode="batch").empty  # batch statistics: another protocol
    only_fid = evaluate_run(run, checkpoints="10", inception_weights=trunk, metrics=["fid"], device="cpu")
    assert list(only_fid["metric"]) == ["fid"] and list(only_fid["step"]) == [10]


def test_is_is_refused_before_any_work_with_the_trunk(tmp_path: Path, trunk: str) -> None:
    run = make_run(tmp_path / "run", image_recipe(["fid", "is"]), steps=(10,))
    with pytest.raises(MetricError, match="^is: .*no 1008-class head") as caught:
        evaluate_run(run, checkpoints="last", inception_weights=trunk, device="cpu")
    assert "\n" not in str(caught.value)
    assert run.read_metrics().empty
    recipe = image_recipe(["fid", "is"])
    recipe.eval.inception_weights = trunk
    with pytest.raises(MetricError, match="no 1008-class head"):
        TrainingEvaluator(recipe, run, torch.device("cpu"))


@pytest.mark.parametrize(
    ("metrics", "num_samples", "message"),
    [
        (["fid", "is"], 5, "is: 5 samples cannot fill 10 splits"),
        (["kid"], 500, "kid: the KID subset size 1000 exceeds the samples"),
        (["fid"], 1, "fid: 1 samples give no covariance"),
        (["fid", "lpips"], 100, "--metrics lpips: unknown metric"),
    ],
)
def test_bad_sample_counts_and_metrics_are_one_line(
    tmp_path: Path, trunk: str, metrics: list[str], num_samples: int, message: str
) -> None:
    run = make_run(tmp_path / "run", image_recipe(), steps=(10,))
    with pytest.raises(MetricError, match=message) as caught:
        evaluate_run(
            run, checkpoints="last", metrics=metrics, num_samples=num_samples, inception_weights=trunk, device="cpu"
        )
    assert "\n" not in str(caught.value)


def test_kid_needs_enough_reference_images(tmp_path: Path, trunk: str) -> None:
    settings = MetricSettings(kid_subset_size=40)  # 40 generated samples suffice, 30 reference images do not
    recipe_small = image_recipe()
    recipe_small.data.num_samples = 30
    run = make_run(tmp_path / "run", recipe_small, steps=(10,))
    with pytest.raises(MetricError, match="40 generated, 30 reference"):
        evaluate_run(run, checkpoints="last", metrics=["kid"], inception_weights=trunk, settings=settings, device="cpu")


def test_missing_weights_and_checkpoints_are_named(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", image_recipe(), steps=(10,))
    with pytest.raises(MetricError, match="no such Inception weights file"):
        evaluate_run(
            run, checkpoints="last", inception_weights=str(tmp_path / "absent.pt"), settings=SMALL, device="cpu"
        )
    with pytest.raises(MetricError, match="best.pt does not exist"):
        evaluate_run(run, checkpoints="best", device="cpu")
    with pytest.raises(MetricError, match="expected best, last, all or a step number"):
        evaluate_run(run, checkpoints="newest", device="cpu")


def test_imported_ttur_statistics_score_fid_only(tmp_path: Path, trunk: str) -> None:
    recipe = image_recipe()
    run = make_run(tmp_path / "run", recipe, steps=(10,))
    ours = reference_statistics(recipe.data, build_extractor(weights=trunk))
    np.savez(tmp_path / "ttur.npz", mu=ours.mu, sigma=ours.sigma)
    rows = evaluate_run(
        run,
        checkpoints="last",
        metrics=["fid"],
        ref_stats=str(tmp_path / "ttur.npz"),
        inception_weights=trunk,
        device="cpu",
    )
    computed = evaluate_run(run, checkpoints="last", metrics=["fid"], inception_weights=trunk, device="cpu")
    assert rows["value"].iloc[0] == pytest.approx(computed["value"].iloc[0], rel=1e-9)  # same mu/sigma
    assert (
        rows["ref_key"].iloc[0].startswith("imported-")
        and rows["fingerprint"].iloc[0] != computed["fingerprint"].iloc[0]
    )
    with pytest.raises(MetricError, match="supports FID only"):
        evaluate_run(
            run,
            checkpoints="last",
            metrics=["kid"],
            ref_stats=str(tmp_path / "ttur.npz"),
            inception_weights=trunk,
            settings=SMALL,
            device="cpu",
        )


def test_statistics_from_another_extractor_are_refused(tmp_path: Path, trunk: str) -> None:
    recipe = image_recipe()
    run = make_run(tmp_path / "run", recipe, steps=(10,))
    other = build_extractor(weights=str(save_tiny_trunk(tmp_path / "other.pt", seed=3, out=WIDTH)))
    save_npz(tmp_path / "other.npz", reference_statistics(recipe.data, other))
    with pytest.raises(MetricError, match="compute the reference with the same"):
        evaluate_run(
            run,
            checkpoints="last",
            metrics=["fid"],
            ref_stats=str(tmp_path / "other.npz"),
            inception_weights=trunk,
            device="cpu",
        )


def test_evaluate_generator_with_a_given_extractor_and_reference(trunk: str) -> None:
    recipe = image_recipe(["fid"])
    extractor = build_extractor(weights=trunk)
    ref = reference_statistics(recipe.data, extractor)
    generator = build_nets(recipe.model, data.output_shape(recipe.data))[0]
    rows = evaluate_generator(
        generator, recipe, step=3, generator_kind="raw", extractor=extractor, ref=ref, num_samples=20
    )
    assert [(r["metric"], r["step"], r["generator"], r["n_fake"]) for r in rows] == [("fid", 3, "raw", 20)]
    assert rows[0]["value"] > 0 and rows[0]["wall_time_s"] > 0 and rows[0]["ref_key"] == ref.key
    bare = RefStats(ref.mu[:10], ref.sigma[:10, :10], ref.n, "x", "train", "", "imported-k")
    with pytest.raises(MetricError, match=f"not the {WIDTH}-d"):
        evaluate_generator(generator, recipe, step=3, generator_kind="raw", extractor=extractor, ref=bare)
