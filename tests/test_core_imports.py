"""The numerical core imports NumPy only: neither SciPy nor h5py."""

import subprocess
import sys

CODE = """
import sys
import refquant
import refquant.numerics
import refquant.numerics.binary, refquant.numerics.floatfmt, refquant.numerics.qparams
import refquant.numerics.quantize, refquant.numerics.rounding, refquant.numerics.scheme
import refquant.testing, refquant.testing.oracles, refquant.testing.assertions
for name in ["QuantScheme", "QParams", "compute_qparams", "qparams_from_tensor",
             "quantize", "dequantize", "fake_quantize", "binarize", "ternarize",
             "to_float16", "to_bfloat16"]:
    getattr(refquant, name)
import numpy as np
qp = refquant.qparams_from_tensor(np.array([-1.0, 2.0]), refquant.QuantScheme())
refquant.dequantize(refquant.quantize([0.5], qp), qp)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("scipy", "h5py",
                "hypothesis"))
print(",".join(loaded))
"""


def test_core_does_not_import_scipy_or_h5py():
    result = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"loaded: {result.stdout.strip()}"
