"""Tests of jaxzip/auto/_students.py and experiments/student_search.py (tiny data, few steps)."""

from __future__ import annotations

import dataclasses
import json
import math

import jax
import numpy as np
import pytest

from jaxzip._errors import DataError
from jaxzip.auto import (
    CNNFamily,
    MLPFamily,
    ScaledCNN,
    StudentSearchResult,
    plot_students,
    scale_widths,
    search_students,
)
from jaxzip.auto._students import _skip_reason
from jaxzip.codec import encode
from jaxzip.data import Dataset
from jaxzip.models import MLP, LeNet5, SmallCNN, init_params, linen_apply_fn, param_count
from jaxzip.train import evaluate


def _dataset(n: int, seed: int, name: str) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, 4, 4, 1)).astype(np.float32)
    return Dataset(x=x, y=rng.integers(0, 3, n).astype(np.int32), num_classes=3, name=name)


def _random_params(module, x, seed):
    """Params of ``module`` drawn with numpy from its shapes: no XLA compile."""
    shapes = jax.eval_shape(lambda: init_params(module, jax.random.key(0), x))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.normal(0.0, 0.5, s.shape).astype(np.float32), shapes)


@pytest.fixture(scope="module")
def setup():
    train, val = _dataset(64, 0, "toy/train"), _dataset(24, 1, "toy/val")
    teacher = MLP((8,), num_classes=3)
    t_params = _random_params(teacher, train.x[:1], 1)
    return {
        "teacher_apply": linen_apply_fn(teacher),
        "teacher_params": t_params,
        "train_ds": train,
        "val_ds": val,
    }


ARGS = {"epochs": 1, "batch_size": 16, "learning_rate": 1e-2, "key": jax.random.key(0)}


@pytest.fixture(scope="module")
def searched(setup):
    # widths 16 * m: 0.25 -> 4, 0.5 -> 8, 0.26 -> 4 (a repeat), 1.0 -> 16 (over budget).
    family = MLPFamily(widths=(16,))
    multipliers = [0.25, 0.5, 0.26, 1.0]
    return search_students(family, multipliers=multipliers, budget_params=200, **setup, **ARGS)


def test_scale_widths_hand_checked():
    family = MLPFamily(widths=(1200, 1200))
    got = [family.widths_for(m) for m in (0.05, 0.1, 0.25, 0.5)]
    assert got == [(60, 60), (120, 120), (300, 300), (600, 600)]
    assert scale_widths((5, 3, 1), 0.5) == (3, 2, 1)  # halves round up, never below 1
    assert scale_widths((10,), 2.5) == (25,)
    assert family.build(0.1, num_classes=7).widths == (120, 120)
    assert CNNFamily.lenet5().widths_for(0.5) == (10, 25, 250)


@pytest.mark.parametrize(
    ("family", "model", "shape"),
    [
        (CNNFamily.lenet5(), LeNet5(), (1, 28, 28, 1)),
        (CNNFamily.small_cnn(), SmallCNN(), (1, 8, 8, 1)),
    ],
)
def test_cnn_family_at_one_has_the_reference_layers(family, model, shape):
    x = np.zeros(shape, np.float32)
    ours = jax.eval_shape(lambda: init_params(family.build(1.0, 10), jax.random.key(0), x))
    ref = jax.eval_shape(lambda: init_params(model, jax.random.key(0), x))
    assert jax.tree.map(lambda a: a.shape, ours) == jax.tree.map(lambda a: a.shape, ref)
    assert param_count(ours) == param_count(ref)


def test_scaled_cnn_output_and_too_small_images():
    module = CNNFamily.small_cnn().build(0.5, num_classes=4)
    assert (module.channels, module.dense_widths) == ((8, 16), (32,))
    x = jax.ShapeDtypeStruct((2, 8, 8, 1), np.float32)
    params = jax.eval_shape(module.init, jax.random.key(0), x)  # shapes only: fast
    assert jax.eval_shape(module.apply, params, x).shape == (2, 4)
    assert params["params"]["Conv_1"]["kernel"].shape == (3, 3, 8, 16)
    with pytest.raises(ValueError, match="too small"):
        jax.eval_shape(ScaledCNN(channels=(4, 4, 4)).init, jax.random.key(0), np.ones((1, 4, 4, 1)))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: MLPFamily(widths=()), "widths"),
        (lambda: MLPFamily(widths=(8, 0)), "widths"),
        (lambda: MLPFamily(widths=(8,), dropout_rate=1.0), "dropout_rate"),
        (lambda: CNNFamily(channels=(4,), padding="same"), "padding"),
        (lambda: CNNFamily(channels=(4,), kernel_size=0), "kernel_size"),
        (lambda: CNNFamily(channels=(4,), dense_widths=(-1,)), "dense_widths"),
        (lambda: MLPFamily(widths=(8,)).widths_for(0.0), "multiplier"),
        (lambda: scale_widths((8,), math.nan), "multiplier"),
    ],
)
def test_family_bad_input(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_multiplier_must_be_a_number():
    with pytest.raises(TypeError, match="multiplier"):
        MLPFamily(widths=(8,)).build(True, 10)
    with pytest.raises(TypeError, match="multiplier"):
        CNNFamily.small_cnn().widths_for("0.5")


def test_records_and_budget_filter(searched, setup):
    r = searched.records
    assert [x.multiplier for x in r] == [0.25, 0.5, 0.26, 1.0]
    assert [x.widths for x in r] == [(4,), (8,), (4,), (16,)]
    # 16 inputs, 3 classes: 16*w + w + w*3 + 3 parameters.
    assert [x.params for x in r] == [83, 163, 83, 323]
    assert [x.f32_bytes for x in r] == [332, 652, 332, 1292]
    assert [x.skipped for x in r] == [
        None,
        None,
        "same widths as multiplier 0.25",
        "over budget: 323 params > 200",
    ]
    for x in r[2:]:
        assert x.val_accuracy is None and x.encoded_bytes is None and x.seconds == 0.0
    for x in r[:2]:
        assert 0.0 <= x.val_accuracy <= 1.0 and math.isfinite(x.train_loss) and x.seconds > 0
    assert searched.feasible
    best = searched.best
    assert best in r[:2]
    assert best.val_accuracy == max(x.val_accuracy for x in r[:2])
    # best_params are the best candidate's trained params: they reproduce its record.
    module = searched.family.build(best.multiplier, 3)
    assert evaluate(linen_apply_fn(module), searched.best_params, setup["val_ds"])["accuracy"] == (
        best.val_accuracy
    )
    assert len(encode(searched.best_params)) == best.encoded_bytes
    assert (
        searched.teacher_val_accuracy
        == evaluate(setup["teacher_apply"], setup["teacher_params"], setup["val_ds"])["accuracy"]
    )


def test_json_round_trip(searched):
    text = searched.to_json()
    data = json.loads(text)
    assert data["feasible"] is True and data["best_multiplier"] == searched.best.multiplier
    assert data["family"] == {"kind": "mlp", "widths": [16], "dropout_rate": 0.0}
    assert data["records"][3]["skipped"] == "over budget: 323 params > 200"
    back = StudentSearchResult.from_json(text)
    assert back == searched and back.best == searched.best and back.best_params is None
    cnn = dataclasses.replace(back, family=CNNFamily.lenet5(), budget_params=None, budget_bytes=9)
    assert StudentSearchResult.from_json(cnn.to_json()) == cnn
    for bad in ("{", "[]", json.dumps(data | {"family": {"kind": "rnn"}})):
        with pytest.raises(DataError, match="not a student search result"):
            StudentSearchResult.from_json(bad)


def test_budget_bytes_and_infeasible(setup):
    result = search_students(
        MLPFamily(widths=(16,)), multipliers=[0.25, 1.0], budget_bytes=331, **setup, **ARGS
    )
    assert not result.feasible and result.best is None and result.best_params is None
    assert [r.skipped for r in result.records] == [
        "over budget: 332 float32 bytes > 331",
        "over budget: 1292 float32 bytes > 331",
    ]
    assert json.loads(result.to_json())["best_multiplier"] is None
    fig = plot_students(result)
    assert (331 / 4, 331 / 4) in [tuple(line.get_xdata()) for line in fig.axes[0].lines]


def test_budget_is_inclusive():
    assert _skip_reason([], (4,), 83, 83, None) is None
    assert _skip_reason([], (4,), 83, None, 332) is None
    assert _skip_reason([], (4,), 84, 83, None) == "over budget: 84 params > 83"


def test_plot(searched):
    ax = plot_students(searched).axes[0]
    assert ax.get_xlabel() == "parameters" and ax.get_xscale() == "log"
    xs = [tuple(line.get_xdata()) for line in ax.lines]
    assert (83, 163) in xs and (200, 200) in xs  # students by size; the budget line
    with pytest.raises(TypeError, match="StudentSearchResult"):
        plot_students({"records": []})


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"multipliers": []}, ValueError, "non-empty"),
        ({"multipliers": [0.5, 0.5]}, ValueError, "distinct"),
        ({"multipliers": [-0.5]}, ValueError, "multiplier"),
        ({"multipliers": "0.5"}, TypeError, "multipliers"),
        ({"budget_bytes": 100}, ValueError, "exactly one"),
        ({"budget_params": None}, ValueError, "exactly one"),
        ({"budget_params": 0}, ValueError, "budget_params"),
        ({"epochs": 0}, ValueError, "epochs"),
        ({"batch_size": 65}, ValueError, "exceeds the 64"),
        ({"learning_rate": 0.0}, ValueError, "learning_rate"),
        ({"key": 0}, TypeError, "key must be a PRNG key"),
        ({"optimizer": "adam"}, TypeError, "optimizer must be an optax constructor"),
        ({"optimizer": lambda lr: "sgd"}, TypeError, "must return an optax.GradientTransformation"),
        ({"family": MLP((4,))}, TypeError, "family"),
        ({"val_ds": "val"}, TypeError, "val_ds"),
        ({"loss": "kd"}, TypeError, "loss"),
    ],
)
def test_search_bad_input(setup, change, error, match):
    kwargs = {"family": MLPFamily(widths=(8,)), "multipliers": [0.5], "budget_params": 10**6}
    kwargs |= setup | ARGS
    with pytest.raises(error, match=match):
        search_students(**(kwargs | change))


def test_teacher_of_wrong_classes(setup):
    teacher = MLP((4,), num_classes=5)
    params = _random_params(teacher, setup["train_ds"].x[:1], 0)
    bad = setup | {"teacher_apply": linen_apply_fn(teacher), "teacher_params": params}
    with pytest.raises(ValueError, match=r"shape \(N, 3\).*\(1, 5\)"):
        search_students(MLPFamily(widths=(8,)), multipliers=[1.0], budget_params=999, **bad, **ARGS)


@pytest.fixture(scope="module")
def script(load_script):
    return load_script("student_search")


TINY = [
    "--dataset",
    "digits",
    "--teacher-widths",
    "16",
    "--teacher-epochs",
    "1",
    "--multipliers",
    "0.5",
    "1",
    "--budget-params",
    "700",
    "--epochs",
    "1",
    "--batch-size",
    "64",
]


def test_script_tiny_run_and_teacher_reuse(script, tmp_path, capsys):
    out = tmp_path / "ss"
    data = script.main([*TINY, "--out", str(out)])
    saved = json.loads((out / "student_search.json").read_text())
    assert saved == json.loads(json.dumps(data))
    # digits: 64 inputs, 10 classes; width 8 -> 64*8+8+8*10+10 = 610 params; width 16 -> 1210.
    assert [(r["params"], r["skipped"]) for r in saved["records"]] == [
        (610, None),
        (1210, "over budget: 1210 params > 700"),
    ]
    assert saved["best_multiplier"] == 0.5 and 0.0 <= saved["best_test_accuracy"] <= 1.0
    assert (out / "student_search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "student_search.md").read_text()
    assert "| **0.5** | 8 | 610 |" in table and "over budget" in table
    assert capsys.readouterr().out == table
    assert StudentSearchResult.from_json(json.dumps(saved)).best.params == 610
    assert (out / "best_student.jz").stat().st_size == saved["records"][0]["encoded_bytes"]

    # Reusing the saved teacher with a budget nothing fits: no training, feasible false.
    out2 = tmp_path / "reuse"
    argv = [*TINY, "--budget-params", "10", "--teacher-params", str(out / "teacher_params.npz")]
    again = script.main([*argv, "--out", str(out2)])
    assert again["feasible"] is False and again["best_test_accuracy"] is None
    assert again["teacher_test_accuracy"] == saved["teacher_test_accuracy"]
    assert not (out2 / "teacher_params.npz").exists() and not (out2 / "best_student.jz").exists()
    assert "No candidate fits the budget" in (out2 / "student_search.md").read_text()


@pytest.mark.parametrize(
    "bad",
    [
        ["--multipliers", "0"],
        ["--multipliers", "0.5", "0.5"],
        ["--budget-params", "10", "--budget-bytes", "10"],
        ["--epochs", "0"],
        ["--budget-bytes", "0"],
        ["--teacher-params", "/nonexistent/teacher.npz"],
        ["--family", "resnet"],
    ],
)
def test_script_bad_args_exit_2(script, bad, capsys):
    with pytest.raises(SystemExit) as exc:
        script.parse_args(["--dataset", "digits", *bad])
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err
