"""The parts of ``experiments/quantization.py``: PTQ, QAT, binary/ternary, k-means.

Each part module exposes ``run_<part>(ctx) -> list[dict]`` (one dict per table
row); :mod:`quantization.common` holds the shared context, evaluation and
fine-tuning loops, and the table formatting.
"""
