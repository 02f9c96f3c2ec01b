"""Tests for ``jaxzip inspect`` and ``jaxzip export`` (jaxzip/cli.py)."""

from __future__ import annotations

import json
import shlex

import jax
import numpy as np
import pytest

import jaxzip as jz
from jaxzip.cli import main
from jaxzip.deploy import load_exported


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    module = jz.models.SmallCNN()
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
    params = jax.jit(module.init)(jax.random.key(0), x)["params"]
    spec = jz.quant.QuantSpec(bits=4, axes=(-1,))
    compressed = jax.jit(lambda p: jz.quant.quantize_params(p, [(r".*/kernel", spec)]))(params)
    jz.codec.save(d / "w.jz", compressed)
    return d, module, compressed, x


def test_inspect_jz(cnn, capsys):
    d, *_ = cnn
    assert main(["inspect", str(d / "w.jz")]) == 0
    out = capsys.readouterr().out
    report = jz.codec.size_report((d / "w.jz").read_bytes())
    assert out.strip() == jz.codec.format_size_report(report)
    assert "Conv_0/kernel" in out and "qarray" in out


def test_inspect_json(cnn, capsys):
    d, *_ = cnn
    assert main(["inspect", "--json", str(d / "w.jz")]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got == json.loads(json.dumps(jz.codec.size_report((d / "w.jz").read_bytes()).to_dict()))
    assert got["file_bytes"] == (d / "w.jz").stat().st_size


def test_export_then_run_and_inspect(cnn, capsys):
    d, module, compressed, x = cnn
    out = d / "m.jzx"
    argv = ["export", "--weights", str(d / "w.jz"), "--out", str(out)]
    argv += shlex.split("--model small_cnn --input-shape 2,8,8,1")
    assert main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    want = jz.models.linen_apply_fn(module)(
        jz.quant.dequantize_params(compressed), x, train=False, key=None
    )
    np.testing.assert_allclose(load_exported(out)(x), want, rtol=1e-5, atol=1e-5)

    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "input  (2, 8, 8, 1) float32" in text and "output (2, 10) float32" in text
    assert "Conv_0/kernel" in text
    assert main(["inspect", "--json", str(out)]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["export"]["input_shape"] == [2, 8, 8, 1]
    assert got["export"]["file_bytes"] == out.stat().st_size
    assert got["leaves"] and got["file_bytes"] < out.stat().st_size


def test_export_polymorphic_batch(cnn, capsys):
    d, *_ = cnn
    argv = ["export", "--weights", str(d / "w.jz"), "--out", str(d / "p.jzx")]
    argv += shlex.split("--model small_cnn --input-shape 1,8,8,1 --polymorphic-batch")
    assert main(argv) == 0
    assert "input [None, 8, 8, 1]" in capsys.readouterr().out
    assert load_exported(d / "p.jzx")(np.zeros((3, 8, 8, 1), np.float32)).shape == (3, 10)


def test_export_any_model_of_the_table(cnn, capsys, one_error_line):
    # the transformer takes int tokens; its default context is 256 (more is refused)
    d, *_ = cnn
    argv = _export_argv(d, **{"--model": "transformer", "--input-shape": "1,300"})
    assert main(argv) == 2
    assert "model 'transformer' cannot take input shape [1, 300]" in one_error_line(capsys)
    assert main(_export_argv(d, **{"--model": "transformer", "--input-shape": "1,8"})) == 2
    assert "do not fit model 'transformer'" in one_error_line(capsys)
    argv = ["export", "--model", "small_cnn", "--weights", str(d / "w.jz"), "--out", "x.jzx"]
    assert main(argv) == 2
    assert "--input-shape: required with --model" in one_error_line(capsys)


def _tiny_kjv_run(root):
    """A tiny language model trained by `jaxzip run` on KJV (context 16, 2 steps)."""
    config = root / "tiny_kjv.toml"
    config.write_text(TINY_KJV)
    assert main(["run", str(config), "--out", str(root / "run")]) == 0
    return root / "run"


TINY_KJV = """
[data]
name = "kjv"
seq_len = 16
train_windows = 32
held_out_windows = 8
[model]
name = "transformer"
num_layers = 1
d_model = 8
num_heads = 2
mlp_ratio = 1
[train]
epochs = 1
batch_size = 16
[codec]
"""


def test_export_a_language_model_run(tmp_path, capsys, kjv_dir):
    run = _tiny_kjv_run(tmp_path)
    capsys.readouterr()
    out = tmp_path / "lm.jzx"
    argv = [
        "export",
        "--config",
        str(run / "config.toml"),
        "--weights",
        str(run / "model.jz"),
        "--out",
        str(out),
        "--polymorphic-batch",
    ]
    assert main(argv) == 0
    assert "input [None, 16], output [None, 16, 256]" in capsys.readouterr().out
    module = jz.models.Transformer(num_layers=1, d_model=8, num_heads=2, mlp_ratio=1, max_len=16)
    like = jax.eval_shape(module.init, jax.random.key(0), np.zeros((1, 16), np.int32))["params"]
    params = jz.train.load_params(run / "params.npz", like)
    x = np.frombuffer(b"In the beginning God created the heaven", np.uint8)[:32]
    x = x.astype(np.int32).reshape(2, 16)
    want = jz.models.linen_apply_fn(module)(params, x, train=False, key=None)
    np.testing.assert_allclose(load_exported(out)(x), want, rtol=1e-5, atol=1e-5)
    # the config builds the model, so a shorter context than it was trained at is fine too
    argv[-2:] = [str(tmp_path / "short.jzx"), "--input-shape=3,4"]
    assert main(argv) == 0
    np.testing.assert_allclose(
        load_exported(tmp_path / "short.jzx")(x[:, :4].repeat(2, 0)[:3]),
        jz.models.linen_apply_fn(module)(params, x[:, :4].repeat(2, 0)[:3], train=False, key=None),
        rtol=1e-5,
        atol=1e-5,
    )


def _export_argv(d, **over):
    args = {
        "--model": "small_cnn",
        "--weights": str(d / "w.jz"),
        "--input-shape": "1,8,8,1",
        "--out": str(d / "bad.jzx"),
    } | over
    return ["export", *[s for kv in args.items() for s in kv]]


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        (
            {"--model": "resnet"},
            "--model must be one of ['mlp', 'lenet_300_100', 'lenet5', 'small_cnn', 'transformer'], got 'resnet'",
        ),
        ({"--input-shape": "1,x,8"}, "--input-shape: expected positive integers"),
        ({"--input-shape": "0,8,8,1"}, "--input-shape"),
        ({"--weights": "missing.jz"}, "missing.jz"),
        ({"--model": "lenet_300_100"}, "do not fit model 'lenet_300_100'"),
        ({"--model": "lenet5"}, "model 'lenet5' cannot take input shape [1, 8, 8, 1]"),
    ],
)
def test_export_bad_input(cnn, capsys, over, needle, one_error_line):
    d, *_ = cnn
    assert main(_export_argv(d, **over)) == 2
    assert needle in one_error_line(capsys)
    assert not (d / "bad.jzx").exists()


def test_inspect_bad_input(cnn, capsys, tmp_path, one_error_line):
    d, *_ = cnn
    assert main(["inspect", str(tmp_path / "missing.jz")]) == 2
    assert "missing.jz" in one_error_line(capsys)
    assert main(["inspect", str(tmp_path)]) == 2
    assert "is a directory" in one_error_line(capsys)
    for name, data in [("t.jz", (d / "w.jz").read_bytes()[:50]), ("g.jz", b"garbage" * 10)]:
        (tmp_path / name).write_bytes(data)
        assert main(["inspect", str(tmp_path / name)]) == 2
        assert str(tmp_path / name) in one_error_line(capsys)
    bad = bytearray((d / "w.jz").read_bytes())
    bad[len(bad) // 2] ^= 1
    (tmp_path / "f.jz").write_bytes(bytes(bad))
    assert main(["inspect", str(tmp_path / "f.jz")]) == 2
    assert "checksum" in one_error_line(capsys)


def test_usage_errors(capsys):
    assert main(["export", "--model", "small_cnn"]) == 2
    assert "usage: jaxzip export" in capsys.readouterr().err
    assert main(["inspect"]) == 2
    assert "usage: jaxzip inspect" in capsys.readouterr().err


def _refit_jz(data: bytes, edit) -> bytes:
    from jaxzip.codec._frame import frame, read_header

    header, start = read_header(data)
    edit(header)
    return frame(header, data[start:-4], version=header["version"])


def test_inspect_validates_as_load_does(cnn, capsys, tmp_path, one_error_line):
    # defect 7e: inspect exited 0 on files that load refuses (the tree, the StableHLO)
    d, module, compressed, x = cnn

    def dup(h):
        h["tree"]["k"][1] = h["tree"]["k"][0]

    bad = tmp_path / "dup.jz"
    bad.write_bytes(_refit_jz((d / "w.jz").read_bytes(), dup))
    with pytest.raises(jz.codec.FormatError):
        jz.codec.load(bad)
    assert main(["inspect", str(bad)]) == 2
    assert "duplicate key" in one_error_line(capsys)

    from jaxzip.deploy._format import pack, unpack

    jzx = tmp_path / "m.jzx"
    jz.deploy.export(jz.models.linen_apply_fn(module), compressed, x, jzx)
    info, _, weights = unpack(jzx.read_bytes())
    jzx.write_bytes(pack(info, b"not a serialized jax.export", weights))
    with pytest.raises(jz.codec.FormatError):
        load_exported(jzx)
    assert main(["inspect", str(jzx)]) == 2
    assert "StableHLO" in one_error_line(capsys)
