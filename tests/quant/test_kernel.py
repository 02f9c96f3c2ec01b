"""Tests for jaxzip/quant/_kernel.py's layout_spec: a traced kernel's spec in its own axes."""

from __future__ import annotations

import re

import jax
import numpy as np
import pytest

import jaxzip as jz
from jaxzip.layout import KernelLayout
from jaxzip.quant import QuantSpec, layout_spec

OUT_PROJ = KernelLayout(shape=(4, 48, 192), in_axes=(0, 1), out_axes=(2,), op="dot_general")
QKV = KernelLayout(shape=(192, 4, 48), in_axes=(0,), out_axes=(1, 2), op="dot_general")
CONV = KernelLayout(shape=(3, 3, 4, 8), in_axes=(0, 1, 2), out_axes=(3,), op="conv")


def test_without_groups_one_scale_per_output_channel():
    assert layout_spec(QKV, bits=4) == QuantSpec(bits=4, axes=(1, 2), group_axis=0)
    s = layout_spec(CONV, bits=8, symmetric=False)
    assert (s.axes, s.group_size, s.symmetric) == ((3,), None, False)


def test_groups_keep_the_other_input_axes_apart():
    # the attention output projection: one scale per head, group of head_dim, output
    s = layout_spec(OUT_PROJ, bits=4, group_size=48)
    assert (s.axes, s.group_size, s.group_axis) == ((0, 2), 48, 1)
    w = np.random.default_rng(0).normal(size=OUT_PROJ.shape).astype(np.float32)
    assert jz.quant.quantize(w, s).scale.shape == (4, 1, 192)
    # a conv kernel: groups of input channels, one scale per tap and output channel
    s = layout_spec(CONV, bits=4, group_size=2)
    assert (s.axes, s.group_size, s.group_axis) == ((0, 1, 3), 2, 2)
    assert jz.quant.quantize(np.ones(CONV.shape, np.float32), s).scale.shape == (3, 3, 2, 8)


def test_an_axis_shorter_than_the_group_is_one_group_and_a_longer_one_must_divide():
    assert layout_spec(OUT_PROJ, bits=4, group_size=64).group_size == 48
    assert layout_spec(QKV, bits=4, group_size=64).group_size == 64  # 192 = 3 x 64
    want = "k: group_size 50 does not divide the 192 inputs along the kernel's last input axis"
    with pytest.raises(ValueError, match=re.escape(want)) as e:
        layout_spec(QKV, bits=4, group_size=50, name="k")
    assert "[2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 192]" in str(e.value)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match=r"group_size must be an int >= 1 or None"):
            layout_spec(QKV, bits=4, group_size=bad)


def test_a_traced_attention_output_projection_gets_a_scale_per_head():
    module = jz.models.Transformer(num_layers=1, d_model=8, num_heads=2, mlp_ratio=1, max_len=4)
    params = jz.models.init_params(module, jax.random.key(0), np.zeros((1, 4), np.int32))
    apply_fn = jz.models.linen_apply_fn(module)
    layouts = jz.layout.trace_layouts(
        lambda p, x: apply_fn(p, x, train=False, key=None), params, np.zeros((1, 4), np.int32)
    )
    path = "block_0/attn/out/kernel"
    spec = layout_spec(layouts[path], bits=4, group_size=4)
    rules = [(re.escape(path), spec)]
    q = jz.quant.quantize_params(params, rules)["block_0"]["attn"]["out"]["kernel"]
    assert q.scale.shape == (2, 1, 8)  # (heads, one group of head_dim 4, out)
