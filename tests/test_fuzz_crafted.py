"""Runs experiments/fuzz_crafted.py's crafted classes in-process, small: load and inspect agree."""

from __future__ import annotations

import numpy as np

import jaxzip as jz


def test_crafted_files_are_refused_by_load_and_inspect_alike(tmp_path, load_script):
    # issue 19: bombs (under and over the cap), inconsistent k-means / QArray leaves,
    # duplicate keys and other bad trees, NaN headers and info, bad StableHLO - every
    # checksum recomputed so the checks behind them run; load and inspect must agree
    fc = load_script("fuzz_crafted")
    s = fc.run_crafted(bomb_bytes=8 << 10, scratch=tmp_path, rss=False)
    assert set(s["classes"]) == set(fc.CLASSES)
    assert s["failures"] == 0, fc.format_crafted(s)
    assert s["inconsistent_loaded"] == 0 and s["tracebacks_hangs_crashes"] == 0
    assert s["cases"] >= 60 and s["classes"]["bomb"]["cases"] == 2 * len(fc.BOMBS)
    # memory: the traced peak of load and of inspect stays within the cap (+ working buffers)
    assert s["over_memory_bound"] == 0, fc.format_crafted(s)
    under = [b for b in s["bombs"] if b["name"].endswith("-under")]
    assert all(b["load"] > 0.4 * b["cap"] for b in under if "many" not in b["name"])


def test_bomb_sizes_sit_at_the_cap(load_script):
    fc = load_script("fuzz_crafted")
    n = fc.largest_bomb("const-int8", 4096)
    filler = np.random.default_rng(0).bytes(4096)
    data = fc.bomb_file("const-int8", n, filler)
    assert jz.codec.memory_bound(data) == n + 4096  # the bomb's bytes and the filler's
    assert n + 4096 <= max(jz.codec.MIN_DECODED_BYTES, jz.codec.MAX_EXPANSION * len(data))
    assert not fc._fits(fc.bomb_file("const-int8", n + 1, filler))
