"""cpikan: Scaled-cPIKAN (Chebyshev physics-informed KAN) and its training-improvement toggles."""

__version__ = "0.1.0"

from cpikan.config import ConfigError, RunConfig
from cpikan.problems import Box, Dirichlet, Initial, Observations, Periodic, Problem
from cpikan.runs import RunResult, run, run_seeds

__all__ = ["Box", "ConfigError", "Dirichlet", "Initial", "Observations", "Periodic", "Problem", "RunConfig",
           "RunResult", "run", "run_seeds", "__version__"]
