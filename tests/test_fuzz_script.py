"""Runs experiments/fuzz_codec.py at 200 cases in-process: only the loaders' own errors, no hangs."""

from __future__ import annotations


def test_200_mutated_files_raise_only_format_errors(tmp_path, load_script):
    fz = load_script("fuzz_codec")
    summary = fz.run_campaign(cases=200, seed=11, workers=0, timeout=5.0, inspect=False)
    assert summary["cases"] == 200
    assert summary["unexpected_total"] == 0, fz.format_summary(summary)
    assert summary["hangs"] == 0
    counts = summary["targets"]["codec"]["counts"]
    # the campaign reaches past the checksums: some files decode, most are refused
    assert counts["expected_error"] > 100 and counts.get("ok_different", 0) > 0
    assert all(t["checksum_escapes"] == 0 for t in summary["targets"].values())
    assert set(summary["targets"]) == {"codec", "deploy", "npz"}


def test_cases_are_deterministic_and_mutate(load_script):
    fz = load_script("fuzz_codec")
    corpus = {"codec": [bytes(range(64)) * 4], "deploy": [b"x" * 50], "npz": [b"y" * 50]}
    a = [fz.make_case(3, i, corpus) for i in range(20)]
    assert a == [fz.make_case(3, i, corpus) for i in range(20)]
    assert len({data for _, _, data, _ in a}) > 15


# Cases of the 100,000-case campaign (--seed 1) that once escaped as other exceptions:
# header fields holding `true` where an int belongs (TypeError in the stream decoders),
# a huge offset (OverflowError), and zip members with an unsupported compression
# method or version, an "encrypted" flag or a garbled .npy header dict.
REGRESSIONS = (7840, 8085, 20053, 42161, 98673, 6572, 7835, 68430, 91934)


def test_campaign_regressions_raise_only_the_loaders_errors(tmp_path, load_script):
    fz = load_script("fuzz_codec")
    corpus = fz.build_corpus(0)
    runner = fz.Runner(corpus, 30.0, tmp_path)
    try:
        outcomes = {case: fz.run_one(runner, 1, case)["outcome"] for case in REGRESSIONS}
    finally:
        runner.close()
    bad = {c: o for c, o in outcomes.items() if o.startswith(("other:", "hang"))}
    assert not bad, bad


def test_the_corpus_does_not_depend_on_the_call_stack(load_script):
    # an exported module's locations would hold the caller's stack: --replay (another
    # stack than the campaign's) would then rebuild other cases than the campaign ran
    fz = load_script("fuzz_codec")

    def nested() -> dict:
        return (lambda: fz.build_corpus(0))()

    assert nested()["deploy"] == fz.build_corpus(0)["deploy"]
