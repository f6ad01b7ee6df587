"""unlearnbench: evaluation and auditing of machine unlearning in diffusion models.

Importing this package is cheap: it pulls in no torch-heavy module. The registries
(`benchmark.registry.METHODS`, ...) resolve built-ins lazily from "module:attr" strings.
"""

__version__ = "0.1.0"


class UnlearnbenchError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits with status 2."""


__all__ = ["UnlearnbenchError", "__version__"]
