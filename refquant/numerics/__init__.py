"""The numerical core: rounding rules, schemes, qparams, quantize/dequantize,
binary/ternary weights and float16/bfloat16 casts.  Imports NumPy only.

``refquant.numerics.quantize`` is the module; the function is
``refquant.quantize`` (or ``refquant.numerics.quantize.quantize``).
"""

from refquant.numerics.binary import LowBitWeights, binarize, ternarize
from refquant.numerics.floatfmt import to_bfloat16, to_float16
from refquant.numerics.qparams import QParams, compute_qparams, qparams_from_tensor
from refquant.numerics.quantize import dequantize, fake_quantize
from refquant.numerics.rounding import ROUNDING_RULES, apply_rounding
from refquant.numerics.scheme import QuantScheme

__all__ = [
    "ROUNDING_RULES",
    "LowBitWeights",
    "QParams",
    "QuantScheme",
    "apply_rounding",
    "binarize",
    "compute_qparams",
    "dequantize",
    "fake_quantize",
    "qparams_from_tensor",
    "ternarize",
    "to_bfloat16",
    "to_float16",
]
