"""Make Hypothesis example generation independent of test selection and order.

Hypothesis (6.13x and later) mixes literal constants found in the source of
every *local* module present in ``sys.modules`` into its draws, even with
``derandomize=True``.  Which refquant modules are imported depends on which
tests were collected and run before, so the same derandomized test drew
different examples in a full run than alone.  Importing every refquant
module here, before any test draws, fixes that constant pool.
"""

from __future__ import annotations

import importlib
import pkgutil

import refquant


def _import_all_refquant_modules() -> None:
    for info in pkgutil.walk_packages(refquant.__path__, "refquant."):
        try:
            importlib.import_module(info.name)
        except ImportError:  # an optional dependency is missing
            continue


_import_all_refquant_modules()
