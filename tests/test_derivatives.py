"""The autograd accessor gives the analytic derivatives of a known function."""

import pytest
import torch

from cpikan.derivatives import AutogradDerivatives


def field(x):
    return torch.sin(x[:, 0]) * x[:, 1] ** 3 + torch.exp(x[:, 0] * x[:, 1])


def test_autograd_accessor_matches_analytic_derivatives():
    x = torch.rand(40, 2, dtype=torch.float64) * 3 - 1
    d = AutogradDerivatives(field, x, {}, lap_axes=(0, 1))
    a, b = x[:, 0], x[:, 1]
    e = torch.exp(a * b)
    expected = {
        "u_x0": torch.cos(a) * b**3 + b * e,
        "u_x1": 3 * torch.sin(a) * b**2 + a * e,
        "u_xx0": -torch.sin(a) * b**3 + b**2 * e,
        "u_xx1": 6 * torch.sin(a) * b + a**2 * e,
        "u_xy": 3 * torch.cos(a) * b**2 + e + a * b * e,
    }
    got = {"u_x0": d.u_x[0], "u_x1": d.u_x[1], "u_xx0": d.u_xx[0], "u_xx1": d.u_xx[1], "u_xy": d.mixed(0, 1)}
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-12, atol=1e-12, msg=name)
    torch.testing.assert_close(d.lap, expected["u_xx0"] + expected["u_xx1"], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(d.u, field(x))
    torch.testing.assert_close(d.u_x[-1], d.u_x[1], rtol=0, atol=0)  # negative axes count from the last
    torch.testing.assert_close(d.u_xx[-2], d.u_xx[0], rtol=0, atol=0)
    for out_of_range in (2, -3):
        with pytest.raises(IndexError, match=f"axis {out_of_range} out of range for 2 input coordinates"):
            d.u_x[out_of_range]
