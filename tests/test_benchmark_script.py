"""Runs the speed benchmarks of experiments/benchmarks/ at tiny size, in-process.

kd_step.py and vmap_students.py are covered by tests/test_distill_scripts.py; these
are the others. The figures are timings, so the tests check what can be checked
exactly: the lines each prints, and that its ratios are the quotients of its medians.
"""

from __future__ import annotations

import re

import pytest


def _numbers(line: str) -> list[float]:
    return [float(x) for x in re.findall(r"\d+\.\d+|\d+", line.replace(",", ""))]


def test_codec_throughput_reports_speeds_and_entropy_overheads(tmp_path, capsys, load_script):
    missing = tmp_path / "none.jz"
    argv = ["--params", "10_000", "--repeats", "1", "--lenet5-file", str(missing)]
    assert load_script("benchmarks/codec_throughput").main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("tree: 10,000 float32 params")
    assert any(line.startswith("encode: median") for line in lines)
    assert any(line.startswith("decode: median") for line in lines)
    assert any("not found" in line for line in lines)
    leaves = [line for line in lines if line.startswith("  Dense_")]
    assert len(leaves) == 10  # ten kernels, each 90% pruned: 100 of 1,000 symbols coded
    for line in leaves:
        symbols, stream, entropy = _numbers(line.split(":", 1)[1])[:3]
        assert symbols == 100 and stream >= entropy > 0  # no stream beats the entropy bound


def test_int8_dense_matches_the_dequantized_float_matmul(capsys, load_script):
    argv = ["--batch", "4", "--in", "16", "--out", "8", "--repeats", "2"]
    assert load_script("benchmarks/int8_dense").main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Dense (4 x 16) @ (16 x 8)")
    t_float, t_int = (_numbers(line)[-1] for line in lines[1:3])
    ratio = _numbers(lines[3].split("x;")[0])[-1]
    assert ratio == pytest.approx(t_int / t_float, rel=0.1, abs=0.02)
    assert float(lines[3].rsplit("= ", 1)[1]) < 1e-4  # int32 accumulation is exact up to f32


def test_quantize_params_reports_the_ratio_of_its_medians(capsys, load_script):
    assert (
        load_script("benchmarks/quantize_params").main(["--params", "8192", "--repeats", "1"]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("params: 8,192 float32")
    assert lines[-1].startswith("ratio:") and lines[-1].endswith("(target <= 3x)")
    medians = {
        line.split(" (jit)")[0]: _numbers(line.split("median")[1])[0]
        for line in lines
        if "(jit): median" in line
    }
    copy = _numbers(lines[3].split("median")[1])[0]
    assert set(medians) == {"quantize_params int8 per-channel", "quantize_params int4 g64"}
    int8 = medians["quantize_params int8 per-channel"] / copy
    assert _numbers(lines[-1])[0] == pytest.approx(int8, rel=0.1, abs=0.01)
    int4 = medians["quantize_params int4 g64"] / copy
    assert _numbers(lines[-2].split(":")[1])[0] == pytest.approx(int4, rel=0.1, abs=0.01)


@pytest.mark.parametrize(
    "name, argv, last",
    [
        ("global_mask", ["--params", "10000", "--repeats", "2"], "peak resident memory"),
        (
            "prune_overhead",
            ["--widths", "16", "4", "--batch", "4", "--steps", "3", "--warmup", "1"],
            "ratio:",
        ),
    ],
)
def test_pruning_benchmarks_run_and_report_a_ratio(name, argv, last, capsys, load_script):
    load_script(f"benchmarks/{name}").main(argv)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith(last)
    assert any(line.startswith("ratio:") for line in lines)


def test_max_pool_reports_its_ratios_and_identical_params(capsys, load_script):
    argv = ["--batch-size", "4", "--steps", "1", "--repeats", "1"]
    assert load_script("benchmarks/max_pool").main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("LeNet-5 train step, batch 4")
    pool = [_numbers(line.split("median")[1])[0] for line in lines if "pool gradient, " in line]
    steps = [
        _numbers(line.split("median")[1])[0] for line in lines if line.startswith("train step, ")
    ]
    assert len(pool) == len(steps) == 2
    pool_ratio = _numbers(next(line for line in lines if line.startswith("pool gradient ratio")))
    assert pool_ratio[0] == pytest.approx(pool[0] / pool[1], rel=0.02, abs=0.01)
    last = lines[-1]
    assert _numbers(last)[0] == pytest.approx(steps[0] / steps[1], rel=0.02, abs=0.01)
    assert last.endswith("identical params after the timed steps: True")


def test_gptq_sparsegpt_times_the_scanned_build_beside_the_loop_build(capsys, load_script):
    argv = "--layers 1 --d-model 16 --sequences 8 --length 16 --batch 4 --repeats 1 --scan"
    result = load_script("benchmarks/gptq_sparsegpt").main(argv.split())
    lines = capsys.readouterr().out.splitlines()
    assert {"gptq scan", "sparsegpt scan", "gptq", "sparsegpt"} <= set(result)
    ratios = [line for line in lines if line.startswith("ratio: ")]
    assert [r.split()[1] for r in ratios] == ["gptq", "sparsegpt"]
    for line in ratios:
        key = line.split()[1]
        quotient = result[f"{key} scan"]["first_s"] / result[key]["first_s"]
        assert _numbers(line.split("/ loop")[1])[0] == pytest.approx(quotient, abs=0.006)
        assert float(line.rsplit(": ", 1)[1]) < 1e-5  # the two builds' results agree


def test_stack_compile_prints_a_row_per_depth_and_the_stack_program_does_not_grow(
    capsys, load_script
):
    argv = "--layers 1,3 --width 8 --batch 2 --repeats 1"
    result = load_script("benchmarks/stack_compile").main(argv.split())
    lines = capsys.readouterr().out.splitlines()
    assert set(result) == {"1", "3"}
    rows = [line for line in lines if line.split() and line.split()[0] in result]
    assert len(rows) == 2
    for r in result.values():
        assert r["ratio"] == pytest.approx(r["loop"]["compile_s"] / r["stack"]["compile_s"])
        assert r["max_abs_diff"] < 1e-5  # the two builds compute the same model
    assert result["1"]["stack"]["jaxpr_lines"] == result["3"]["stack"]["jaxpr_lines"]
    assert result["3"]["loop"]["jaxpr_lines"] > result["1"]["loop"]["jaxpr_lines"]
    with pytest.raises(SystemExit):
        load_script("benchmarks/stack_compile").main(["--layers", "0"])
