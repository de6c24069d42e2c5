"""Our flow samplers and the straight path against an independent implementation: Meta's ``flow_matching``
(``pip install flow_matching``, test-only, in the ``dev`` extra; it integrates with ``torchdiffeq``).

Both sides integrate the same velocity field in float64 at the same step sizes. The one trap is time:
``flow_matching`` runs s = 0 (noise) → s = 1 (data), the course t = 1 (noise) → t = 0 (data). So s = 1 − t,
x_s = x_t, and their velocity dx/ds is minus ours: v_fm(x, s) = −u(x, 1 − s). Their ``CondOTProbPath`` is
x_s = s x_data + (1 − s) x_noise with dx_s = x_data − x_noise, so its dx_t is minus our target x₁ − x₀.
Fixed-step solvers are given the time grid itself (``step_size=None``): torchdiffeq's own grid from a
step size, ceil(1/h + 1) points, can gain a point to rounding (h = 1/3 gives 5 points, not 4).
"""
import pytest
import torch

flow_matching = pytest.importorskip("flow_matching", reason="flow_matching is the test-only oracle (pip install -e .[dev])")

from flow_matching.path import CondOTProbPath  # noqa: E402
from flow_matching.solver import ODESolver  # noqa: E402
from flow_matching.utils import ModelWrapper  # noqa: E402

import diffusion_edu as de  # noqa: E402

TOL = 1e-10  # float64 on both sides: the same arithmetic up to the order of operations


class MixtureVelocity(torch.nn.Module):
    """A non-linear field: the exact marginal velocity for data on a mixture of two Gaussians in 2-D."""

    means = torch.tensor([[-1.0, 0.5], [1.0, -0.5]], dtype=torch.float64)
    std = 0.3

    def forward(self, x, t, y=None):
        t = t.reshape(-1, 1).to(x.dtype)
        var = (1 - t) ** 2 * self.std**2 + t**2  # (B, 1): Var x_t per component
        centred = x[:, None] - (1 - t[:, None]) * self.means  # (B, K, D)
        logits = -(centred.square().sum(-1)) / (2 * var)  # equal weights, equal variances
        r = logits.softmax(dim=1)[..., None]  # (B, K, 1): responsibilities
        x0 = self.means + (1 - t[:, None]) * self.std**2 / var[:, None] * centred  # E[x₀ | x_t, k]
        eps = t[:, None] / var[:, None] * centred  # E[x₁ | x_t, k]
        return (r * (eps - x0)).sum(1)


def fields():
    torch.manual_seed(0)
    net = de.MLPDenoiser(dim=2, hidden=32, depth=2, time_scale=1000.0).double().eval()  # an untrained network
    return {"mixture": MixtureVelocity(), "network": net}


class Theirs(ModelWrapper):
    """Our velocity network as flow_matching's model: its time s is our 1 − t, its velocity minus ours."""

    def forward(self, x, t, **extras):
        s = torch.as_tensor(t, dtype=x.dtype).reshape(-1).expand(len(x))
        return -self.model(x, 1 - s)


X1 = torch.randn(128, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("field", ["mixture", "network"])
@pytest.mark.parametrize("steps", [1, 3, 8, 32])
@pytest.mark.parametrize("ours, method", [(de.ode_euler, "euler"), (de.ode_midpoint, "midpoint")])
def test_ode_samplers_agree_with_flow_matching(field, steps, ours, method):
    model = fields()[field]
    denoiser = de.Denoiser(model, de.rectified(), de.VELOCITY)
    mine = de.sample(ours, denoiser, X1, de.uniform_times(steps))
    grid = torch.linspace(0, 1, steps + 1, dtype=torch.float64)  # s = 1 − t
    theirs = ODESolver(velocity_model=Theirs(model)).sample(X1, step_size=None, method=method, time_grid=grid)
    assert (mine - theirs).abs().max() <= TOL


@pytest.mark.parametrize("steps", [2, 10])
def test_heun_agrees_with_torchdiffeq_heun2_away_from_the_data_end(steps):
    """Our Heun keeps Euler's step only where σ(t_next) = 0; on a grid that stops at t = 0.05 it is heun2."""
    model = fields()["mixture"]
    denoiser = de.Denoiser(model, de.rectified(), de.VELOCITY)
    mine = de.sample(de.ode_heun, denoiser, X1, de.uniform_times(steps, t_min=0.05))
    grid = 1 - de.uniform_times(steps, t_min=0.05)
    theirs = ODESolver(velocity_model=Theirs(model)).sample(X1, step_size=None, method="heun2", time_grid=grid)
    assert (mine - theirs).abs().max() <= TOL


def test_cfm_target_is_minus_their_dx_t():
    g = torch.Generator().manual_seed(1)
    data, noise = torch.randn(2, 64, 1, 4, 4, generator=g, dtype=torch.float64)
    t = torch.rand(64, generator=g, dtype=torch.float64)
    x_t, u = de.cfm_sample(data, noise, t)
    theirs = CondOTProbPath().sample(x_0=noise, x_1=data, t=1 - t)
    assert (x_t - theirs.x_t).abs().max() <= TOL
    assert (u + theirs.dx_t).abs().max() <= TOL
    c = de.rectified().coefficients(t, data)  # and the package's velocity parameterisation says the same
    assert (de.VELOCITY.target(data, noise, c) + theirs.dx_t).abs().max() <= TOL
