"""Derivative engines behind one accessor that residuals read (see `cpikan.derivatives.base`).

``ENGINES`` maps the ``derivatives`` config choice to its accessor class; every class takes
``(net, x, params, lap_axes)``.
"""

from cpikan.derivatives.autograd import AutogradDerivatives
from cpikan.derivatives.base import Derivatives
from cpikan.derivatives.taylor import Plan, TaylorDerivatives, discover_plan

ENGINES: dict[str, type[Derivatives]] = {"autograd": AutogradDerivatives, "taylor": TaylorDerivatives}

__all__ = ["ENGINES", "AutogradDerivatives", "Derivatives", "Plan", "TaylorDerivatives", "discover_plan"]
