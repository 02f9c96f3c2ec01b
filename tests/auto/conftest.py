"""Fixtures for the auto tests: a tiny two-layer MLP, an accuracy-like eval function and a
search of a model's kernels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import pytest

from jaxzip.auto import SearchSpace, search


def _forward(params: Any, x: np.ndarray) -> np.ndarray:
    h = np.maximum(
        x @ np.asarray(params["Dense_0"]["kernel"]) + np.asarray(params["Dense_0"]["bias"]), 0
    )
    return h @ np.asarray(params["Dense_1"]["kernel"]) + np.asarray(params["Dense_1"]["bias"])


@pytest.fixture(scope="session")
def mlp() -> dict[str, Any]:
    """A fixed random 32-24-6 MLP (numpy leaves; jax treats them as arrays)."""
    rng = np.random.default_rng(0)
    return {
        "Dense_0": {
            "kernel": rng.normal(size=(32, 24)).astype(np.float32) / 5,
            "bias": np.zeros(24, np.float32),
        },
        "Dense_1": {
            "kernel": rng.normal(size=(24, 6)).astype(np.float32) / 4,
            "bias": np.zeros(6, np.float32),
        },
    }


class CountingEval:
    """Accuracy of the params' argmax against the dense model's, on fixed inputs; counts calls."""

    def __init__(self, dense: Any, *, fail_at: int | None = None) -> None:
        self.x = np.random.default_rng(1).normal(size=(256, 32)).astype(np.float32)
        self.labels = _forward(dense, self.x).argmax(-1)
        self.calls = 0
        self.fail_at = fail_at

    def __call__(self, params: Any) -> float:
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise KeyboardInterrupt("simulated kill")
        return float(np.mean(_forward(params, self.x).argmax(-1) == self.labels))


@pytest.fixture
def make_eval(mlp: dict[str, Any]) -> Callable[..., CountingEval]:
    """``make_eval(fail_at=None)``: a fresh :class:`CountingEval` of the MLP."""
    return lambda **kw: CountingEval(mlp, **kw)


def shrink_bias(params: Any, mask: Any, *, key: jax.Array) -> Any:
    """A cheap, key-dependent 'fine-tuning': nudges the biases (keeps masked kernels zero)."""
    eps = float(jax.random.uniform(key)) * 1e-3
    return jax.tree.map(lambda p, m: np.where(m, p, 0) + (eps if p.ndim == 1 else 0), params, mask)


@pytest.fixture
def finetune() -> Callable[..., Any]:
    """:func:`shrink_bias`, a stand-in ``finetune_fn``."""
    return shrink_bias


def search_kernels(
    params: Any, eval_fn: Callable[[Any], float], space: SearchSpace, **kw: Any
) -> Any:
    """:func:`jaxzip.auto.search` of ``params``' kernels (``where=r".*/kernel"``) with key 0,
    unless ``kw`` says otherwise; ``kw`` (``max_drop``, ``out_dir``, hooks ...) go to search."""
    kw = {"where": r".*/kernel", "key": jax.random.key(0), **kw}
    return search(params, eval_fn=eval_fn, space=space, **kw)


@pytest.fixture
def run_search() -> Callable[..., Any]:
    """:func:`search_kernels`: ``run_search(params, eval_fn, space, max_drop=..., **kw)``."""
    return search_kernels
