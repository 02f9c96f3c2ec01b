"""Tests of jaxzip/auto/_common.py."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.auto._common import check_score, layer_mask, settings_key, share_weights


def test_check_score():
    assert check_score(np.float32(0.25)) == 0.25 and check_score(3) == 3.0
    assert check_score(jnp.array(0.5)) == 0.5
    for bad in (float("inf"), np.array([0.5]), "x", object(), False):
        with pytest.raises(ValueError, match="my_fn: expected a finite scalar"):
            check_score(bad, "my_fn")


def test_layer_mask_and_share_weights(mlp):
    mask = layer_mask(mlp, {"Dense_0/kernel": 0.75, "Dense_1/kernel": 0.0})
    assert float(jnp.mean(mask["Dense_0"]["kernel"])) == 0.25
    assert bool(jnp.all(mask["Dense_1"]["kernel"])) and bool(jnp.all(mask["Dense_0"]["bias"]))
    books = share_weights(mlp, {"Dense_0/kernel": 2}, mask, iters=5)
    dec = np.asarray(books["Dense_0"]["kernel"].decode())
    assert (dec[~np.asarray(mask["Dense_0"]["kernel"])] == 0).all()
    assert len(np.unique(dec[dec != 0])) <= 4
    assert books["Dense_1"]["kernel"] is mlp["Dense_1"]["kernel"]


def test_settings_key_canonical():
    assert settings_key({"a": 1, "b": [2]}) == settings_key({"b": [2], "a": 1})
    assert settings_key({"a": 1}) != settings_key({"a": 2})
