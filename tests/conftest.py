import importlib
import os
import pkgutil

from hypothesis import HealthCheck, settings

import refquant

# CI runs derandomized with a fixed budget; locally more examples are tried.
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "dev",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev")
)


# Hypothesis mixes literal constants from the source of every local module in
# sys.modules into its draws, even when derandomized.  Which refquant modules
# are loaded would then depend on which tests ran first, and the same test
# would draw different examples alone and in the full run.  Importing every
# module before any test draws fixes that pool for the whole suite.
def _import_all_refquant_modules() -> None:
    for info in pkgutil.walk_packages(refquant.__path__, "refquant."):
        try:
            importlib.import_module(info.name)
        except ImportError:  # an optional dependency is missing
            continue


_import_all_refquant_modules()
