"""run_oneshot's options (OneShotOptions), as the one-shot methods pass them on."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import pytest

import jaxzip as jz
from jaxzip.calib import OneShotOptions, run_oneshot


def _model():
    params = {
        "w1": jax.random.normal(jax.random.key(0), (8, 16)),
        "w2": jax.random.normal(jax.random.key(1), (16, 4)),
    }
    batches = [jax.random.normal(jax.random.key(i), (32, 8)) for i in (2, 3)]
    return (lambda p, x: jax.nn.relu(x @ p["w1"]) @ p["w2"]), params, batches


def _gptq(apply_fn, params, batches, **options):
    return jz.quant.gptq(apply_fn, params, batches, jz.quant.QuantSpec(bits=4), **options)


def _sparsegpt(apply_fn, params, batches, **options):
    return jz.prune.sparsegpt(apply_fn, params, batches, sparsity=0.5, **options)[1]


def _wanda(apply_fn, params, batches, **options):
    return jz.prune.wanda(apply_fn, params, batches, sparsity=0.5, **options)


METHODS = {"gptq": _gptq, "sparsegpt": _sparsegpt, "wanda": _wanda}
"""Each method's result tree: GPTQ's params (a QArray per processed kernel), the others' masks."""


def _untouched(name, params):
    """What a kernel the method did not process holds in its result."""
    return params["w1"] if name == "gptq" else jnp.ones(params["w1"].shape, bool)


def _dense(x):
    """A result leaf as an array (a QArray dequantized)."""
    return jz.quant.dequantize(x) if isinstance(x, jz.quant.QArray) else x


def test_the_options_are_run_oneshots_keywords_with_their_documented_defaults():
    parameters = inspect.signature(run_oneshot).parameters
    defaults = {"where": None, "sequential": True, "layouts": None, "progress": False}
    assert set(OneShotOptions.__annotations__) == set(defaults)
    for name, default in defaults.items():
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert parameters[name].default == default


@pytest.mark.parametrize("name", METHODS)
def test_each_method_passes_the_options_on(name):
    apply_fn, params, batches = _model()
    layouts = jz.layout.trace_layouts(apply_fn, params, batches[0])
    both = METHODS[name](apply_fn, params, batches, sequential=False)
    only_w2 = METHODS[name](
        apply_fn, params, batches, where="w2", sequential=False, layouts=layouts
    )
    assert jnp.array_equal(only_w2["w1"], _untouched(name, params))
    assert not jnp.array_equal(_dense(both["w1"]), _untouched(name, params))  # processed
    for a, b in zip(jax.tree.leaves(only_w2["w2"]), jax.tree.leaves(both["w2"]), strict=True):
        assert jnp.array_equal(a, b)


@pytest.mark.parametrize("method", METHODS.values(), ids=METHODS)
def test_each_method_refuses_a_bad_option(method):
    apply_fn, params, batches = _model()
    with pytest.raises(TypeError, match="sequential must be a bool"):
        method(apply_fn, params, batches, sequential=1)
    with pytest.raises(TypeError, match="progress must be a bool, got 'yes'"):
        method(apply_fn, params, batches, progress="yes")
    with pytest.raises(TypeError, match="wher"):
        method(apply_fn, params, batches, wher="w2")


@pytest.mark.parametrize("name", METHODS)
def test_progress_shows_a_bar_over_the_kernels_and_changes_nothing(name, capsys):
    apply_fn, params, batches = _model()
    quiet = METHODS[name](apply_fn, params, batches)
    assert capsys.readouterr().err == ""  # no bar by default
    shown = METHODS[name](apply_fn, params, batches, progress=True)
    err = capsys.readouterr().err
    assert "2/2" in err and "kernel" in err and "w2" in err, err  # both kernels, the last named
    for a, b in zip(jax.tree.leaves(quiet), jax.tree.leaves(shown), strict=True):
        assert jnp.array_equal(a, b)
