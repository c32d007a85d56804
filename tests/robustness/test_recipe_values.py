"""Recipes refuse each kind of bad value with one line that starts with the key (or path) and says how to fix it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ganbench import recipe as recipes
from ganbench.errors import RecipeError


def refused(text: str, overrides: list[str] | None = None) -> str:
    """The RecipeError message for a recipe text, checked to be one line."""
    with pytest.raises(RecipeError) as caught:
        recipes.loads(text, overrides)
    message = str(caught.value)
    assert len(message.splitlines()) == 1, message
    assert "; " in message, f"no fix given: {message}"  # every message is "what is wrong; how to fix it"
    return message


BAD_NAMES = [
    "../escape",
    "a/b",
    "a\\\\b",
    "/abs/path",
    "",
    "a\\nb",
    "tab\\there",
    "bell\\u0007",
    ".hidden",
    "..",
    "with space",
    "semi;colon",
    "$(reboot)",
    "quote'd",
    "café",  # letters beyond ASCII are not file-name-safe everywhere (job names, other file systems)
    "x" * 101,
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_unsafe_names_are_refused(name: str) -> None:
    message = refused(f'name = "{name}"')
    assert message.startswith("name: ")


def test_name_message_says_what_is_allowed() -> None:
    message = refused('name = "../x"')
    assert "'../x'" in message and "letters, digits" in message and "100" in message


@pytest.mark.parametrize("name", ["a", "cifar10_cnn_gn", "run-2.v3", "0day", "_x", "x" * 100])
def test_plain_names_load(name: str) -> None:
    assert recipes.loads(f'name = "{name}"').name == name


def test_a_name_with_a_line_break_is_shown_escaped_on_one_line() -> None:
    assert "'a\\nb'" in refused('name = "a\\nb"')


def test_a_file_name_that_is_not_a_plain_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "my recipe.toml"  # no name key: the file name would become results/<name>
    path.write_text("")
    with pytest.raises(RecipeError, match=r"^name: 'my recipe'.*file name"):
        recipes.load(path)


FLOAT_KEYS = [
    ("train", "lr_d"),
    ("train", "lr_g"),
    ("train", "beta1"),
    ("train", "beta2"),
    ("train", "ema_decay"),
    ("method", "gran_k"),
    ("method", "gran_eps"),
    ("method", "gp_lambda"),
    ("method", "lgan_lambda"),
    ("method", "sn_eps"),
    ("method", "cr_lambda"),
    ("method", "cr_translate"),
]


@pytest.mark.parametrize(("section", "key"), FLOAT_KEYS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "+nan"])
def test_nan_and_infinities_are_refused_in_every_float_key(section: str, key: str, value: str) -> None:
    message = refused(f"[{section}]\n{key} = {value}")
    assert message.startswith(f"{section}.{key}: ") and "finite" in message


def test_an_integer_too_large_for_a_float_is_refused() -> None:
    assert refused("[train]\nlr_d = 1" + "0" * 400).startswith("train.lr_d: ")


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("[train]\nema_decay = 1.0", "train.ema_decay"),  # EMA-G would stay at its first copy
        ("[train]\nema_decay = 1", "train.ema_decay"),
        ("[train]\nema_decay = -0.1", "train.ema_decay"),
        ("[train]\nbeta1 = 1.0", "train.beta1"),
        ("[train]\nbeta1 = -0.5", "train.beta1"),
        ("[train]\nbeta2 = 1.0", "train.beta2"),
        ("[train]\nlr_d = 0.0", "train.lr_d"),
        ("[train]\nlr_g = -1e-4", "train.lr_g"),
        ("seed = -1", "seed"),
        ("[data]\nseed = -1", "data.seed"),
        ("seed = 4294967296", "seed"),  # numpy's global seed takes 32 bits
        ("[train]\nbatch_size_d = 65537", "train.batch_size_d"),
        ("[train]\nbatch_size_g = 1000000", "train.batch_size_g"),
        ("[eval]\nbatch_size = 65537", "eval.batch_size"),
        ("[eval]\nnum_samples = 10000001", "eval.num_samples"),
        ("[data]\nnum_samples = 10000001", "data.num_samples"),
        ("[train]\nsteps = 100000001", "train.steps"),
        ("[train]\nlog_every = 9223372036854775808", "train.log_every"),  # past int64
    ],
)
def test_out_of_range_values_are_refused(line: str, key: str) -> None:
    assert refused(line).startswith(f"{key}: ")


def test_size_limits_are_stated_in_the_message() -> None:
    assert "at most 65536" in refused("[train]\nbatch_size_d = 70000")
    assert "at most 10000000" in refused("[eval]\nnum_samples = 20000000")
    assert "at most 100000000" in refused("[train]\nsteps = 200000000")
    assert "less than 1.0" in refused("[train]\nema_decay = 1.0")


@pytest.mark.parametrize(
    "line",
    [
        "[train]\nema_decay = 0.0",
        "[train]\nema_decay = 0.999999",
        "[train]\nbeta1 = 0.0\nbeta2 = 0.999",
        "seed = 4294967295",
        "[data]\nseed = 0",
        "[train]\nbatch_size_d = 65536\nbatch_size_g = 65536",
        "[eval]\nnum_samples = 10000000\nbatch_size = 65536",
        "[train]\nsteps = 100000000",
    ],
)
def test_values_at_the_edges_of_their_ranges_load(line: str) -> None:
    recipes.loads(line)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:7", "mps"])
def test_known_device_forms_load_whether_or_not_the_device_exists(device: str) -> None:
    assert recipes.loads(f'[train]\ndevice = "{device}"').train.device == device


@pytest.mark.parametrize("device", ["gpu", "CUDA", "cuda:", "cuda:-1", "cuda:x", " cpu", "cpu:0", "meta", "xla", ""])
def test_other_devices_are_refused_with_the_allowed_forms(device: str) -> None:
    message = refused(f'[train]\ndevice = "{device}"')
    assert message.startswith("train.device: ") and "auto, cpu, cuda, cuda:N or mps" in message


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('[data]\nname = "imagenet"', "data.name"),
        ('[model]\narch = "vgg"', "model.arch"),
        ('[method]\nname = "../sn"', "method.name"),
        ('[loss]\nname = "hinge\\n"', "loss.name"),
    ],
)
def test_registry_names_are_checked(line: str, key: str) -> None:
    assert refused(line).startswith(f"{key}: ")


@pytest.mark.parametrize(("section", "key"), [("data", "root"), ("eval", "inception_weights"), ("eval", "ref_split")])
def test_control_characters_in_free_text_are_refused(section: str, key: str) -> None:
    assert refused(f'[{section}]\n{key} = "a\\u0000b"').startswith(f"{section}.{key}: ")


def test_unknown_metrics_are_refused() -> None:
    message = refused('[eval]\nmetrics = ["fid", "FID2"]')
    assert message.startswith("eval.metrics[1]: ") and "fid, is, kid, pr" in message


def test_an_empty_metric_list_is_refused() -> None:
    assert refused("[eval]\nmetrics = []").startswith("eval.metrics: ")


def test_modes_score_point_sets_only() -> None:
    assert recipes.loads('[data]\nname = "ring8"\n[eval]\nmetrics = ["modes"]').eval.metrics == ["modes"]
    message = refused('[data]\nname = "cifar10"\n[model]\narch = "cnn32"\n[eval]\nmetrics = ["modes"]')
    assert message.startswith("eval.metrics[0]: ") and "cifar10" in message


def test_every_image_metric_loads() -> None:
    text = '[data]\nname = "cifar10"\n[model]\narch = "cnn32"\n[eval]\nmetrics = ["fid", "is", "kid", "pr"]'
    assert recipes.loads(text).eval.metrics == ["fid", "is", "kid", "pr"]


# --set


def test_a_set_value_that_starts_like_toml_but_does_not_parse_names_the_key_and_the_toml_error() -> None:
    message = refused("", ["eval.metrics=[fid"])
    assert message.startswith("eval.metrics: ") and "'[fid'" in message and "not valid TOML (" in message


@pytest.mark.parametrize(
    ("item", "key"),
    [
        ('name="unterminated', "name"),
        ("data.root='half", "data.root"),
        ("train.lr_d={a = ", "train.lr_d"),
        ("train.steps=1e", "train.steps"),  # a number that does not parse is not read as the word "1e"
        ("train.lr_d=1.2.3", "train.lr_d"),
    ],
)
def test_malformed_toml_in_set_values_is_refused(item: str, key: str) -> None:
    message = refused("", [item])
    assert message.startswith(f"{key}: ") and "not valid TOML" in message


def test_bare_words_stay_strings() -> None:
    resolved = recipes.loads("", ["method.name=gn", "name=3d_gan", "data.root=2024_runs", "eval.metrics=fid,kid"])
    assert (resolved.method.name, resolved.name, resolved.data.root) == ("gn", "3d_gan", "2024_runs")
    assert resolved.eval.metrics == ["fid", "kid"]


@pytest.mark.parametrize(
    ("item", "start"),
    [
        ("train.stepz=3", "train.stepz: "),
        ("trian.steps=3", "trian: "),
        ("bogus=1", "bogus: "),
        ("train=3", "train: "),  # a whole table
        ("train.steps.x=3", "train.steps: "),  # a value, not a table
        ("train..steps=3", "--set "),
        (".steps=3", "--set "),
        ("train.=3", "--set "),
        ("=3", "--set "),
        ("train.steps", "--set "),
    ],
)
def test_bad_set_keys_are_refused(item: str, start: str) -> None:
    assert refused("", [item]).startswith(start)


def test_a_set_value_with_a_line_break_cannot_smuggle_other_keys() -> None:
    assert refused("", ["train.steps=3\nseed = 4"]).startswith("train.steps: ")


def test_set_refuses_a_value_where_the_recipe_has_a_table_key_as_a_value() -> None:
    assert refused("train = 5", ["train.steps=3"]).startswith("train: ")


# recipe files


def test_a_non_utf8_recipe_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(RecipeError) as caught:
        recipes.load(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and "UTF-8" in message and len(message.splitlines()) == 1


def test_a_directory_is_not_a_recipe(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="is a directory"):
        recipes.load(tmp_path)


def test_a_toml_error_in_a_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('name = """\n\n')
    with pytest.raises(RecipeError) as caught:
        recipes.load(path)
    assert len(str(caught.value).splitlines()) == 1
