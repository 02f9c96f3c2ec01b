"""The compressed file: bit packing, sparse positions, entropy coding, a checksummed container.

Example:
  >>> import numpy as np
  >>> from jaxzip import codec
  >>> tree = {"w": np.array([0.0, 0.0, 1.5, 0.0], np.float32)}
  >>> codec.decode(codec.encode(tree))["w"]
  array([0. , 0. , 1.5, 0. ], dtype=float32)
"""

from jaxzip.codec._bits import decode_gaps, encode_gaps, pack_bits, unpack_bits
from jaxzip.codec._container import (
    MAX_EXPANSION,
    MIN_DECODED_BYTES,
    decode,
    encode,
    load,
    memory_bound,
    save,
)
from jaxzip.codec._entropy import (
    ans_decode,
    ans_encode,
    entropy_bits,
    huffman_decode,
    huffman_encode,
    symbol_counts,
)
from jaxzip.codec._errors import FormatError
from jaxzip.codec._report import LeafSize, SizeReport, format_size_report, size_report
from jaxzip.codec._streams import Encoding

__all__ = [
    "MAX_EXPANSION",
    "MIN_DECODED_BYTES",
    "Encoding",
    "FormatError",
    "LeafSize",
    "SizeReport",
    "ans_decode",
    "ans_encode",
    "decode",
    "decode_gaps",
    "encode",
    "encode_gaps",
    "entropy_bits",
    "format_size_report",
    "huffman_decode",
    "huffman_encode",
    "load",
    "memory_bound",
    "pack_bits",
    "save",
    "size_report",
    "symbol_counts",
    "unpack_bits",
]
