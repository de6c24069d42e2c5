"""What a network predicts, and the one-line conversions between the choices (chapters 01, 03, 06, 07).

On a Gaussian path x_t = α x₀ + σ ε (``processes``; a discrete schedule has α = √ᾱ_t, σ = √(1 − ᾱ_t)) a
denoiser can be trained to predict any of:

============  =====================  =========================================  =================================
name          target                 back to (x₀, ε)                            source
============  =====================  =========================================  =================================
``EPS``       ε                      x₀ = (x_t − σ ε)/α                         Ho et al. 2020, Eq. 14
``X0``        x₀                     ε = (x_t − α x₀)/σ                         Ho et al. 2020, §3.2
``V``         v = α ε − σ x₀         x₀ = (α x_t − σ v)/(α² + σ²)               Salimans & Ho 2022, §4
``VELOCITY``  u = α′ x₀ + σ′ ε       x₀ = (σ′ x_t − σ u)/(α σ′ − σ α′)          Lipman et al. 2023, Eq. 22
``SCORE``     s = ∇ log p_t = −ε/σ   ε = −σ s                                   Vincent 2011; Song & Ermon 2019
============  =====================  =========================================  =================================

A ``Parameterisation`` is these two functions; training (``train.diffusion_loss``) asks it for the target and
every sampler reaches a network through a ``Denoiser``, which asks it for (x₀, ε). So every sampler runs on
every model, whatever it was trained to predict.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from .processes import Coefficients
from .schedules import from_path

Model = Callable[..., Tensor]


# ------------------------------------------------------------------------- the conversions, one line each

def x0_from_eps(x_t: Tensor, eps: Tensor, c: Coefficients) -> Tensor:
    return (x_t - c.sigma * eps) / c.alpha  # x_t = α x₀ + σ ε solved for x₀


def eps_from_x0(x_t: Tensor, x0: Tensor, c: Coefficients) -> Tensor:
    return (x_t - c.alpha * x0) / c.sigma


def v_of(x0: Tensor, eps: Tensor, c: Coefficients) -> Tensor:
    return c.alpha * eps - c.sigma * x0  # Salimans & Ho (2022), §4


def x0_eps_from_v(x_t: Tensor, v: Tensor, c: Coefficients) -> tuple[Tensor, Tensor]:
    n = c.alpha**2 + c.sigma**2  # 1 on a variance-preserving path
    return (c.alpha * x_t - c.sigma * v) / n, (c.sigma * x_t + c.alpha * v) / n


def velocity_of(x0: Tensor, eps: Tensor, c: Coefficients) -> Tensor:
    _need_derivatives(c)
    return c.d_alpha * x0 + c.d_sigma * eps  # d x_t / dt along one path (Lipman et al. 2023, Eq. 22)


def x0_eps_from_velocity(x_t: Tensor, u: Tensor, c: Coefficients) -> tuple[Tensor, Tensor]:
    _need_derivatives(c)
    det = c.alpha * c.d_sigma - c.sigma * c.d_alpha  # [α σ; α′ σ′] [x₀; ε] = [x_t; u], inverted
    return (c.d_sigma * x_t - c.sigma * u) / det, (c.alpha * u - c.d_alpha * x_t) / det


def score_of(eps: Tensor, c: Coefficients) -> Tensor:
    return -eps / c.sigma  # ∇ log N(x_t; α x₀, σ² I) = −ε/σ (Vincent 2011)


def eps_from_score(score: Tensor, c: Coefficients) -> Tensor:
    return -c.sigma * score


# ---------------------------------------------------------------------------------- parameterisations

@dataclass(frozen=True)
class Parameterisation:
    """What a network predicts: ``target(x0, eps, c)`` for training, ``to_x0_eps(pred, x_t, c)`` for sampling."""

    name: str
    target: Callable[[Tensor, Tensor, Coefficients], Tensor]
    to_x0_eps: Callable[[Tensor, Tensor, Coefficients], tuple[Tensor, Tensor]]

    def __repr__(self) -> str:
        return self.name.upper()


EPS = Parameterisation("eps", lambda x0, eps, c: eps, lambda eps, x_t, c: (x0_from_eps(x_t, eps, c), eps))
X0 = Parameterisation("x0", lambda x0, eps, c: x0, lambda x0, x_t, c: (x0, eps_from_x0(x_t, x0, c)))
V = Parameterisation("v", v_of, lambda v, x_t, c: x0_eps_from_v(x_t, v, c))
VELOCITY = Parameterisation("velocity", velocity_of, lambda u, x_t, c: x0_eps_from_velocity(x_t, u, c))
SCORE = Parameterisation("score", lambda x0, eps, c: score_of(eps, c),
                         lambda s, x_t, c: (x0_from_eps(x_t, eps_from_score(s, c), c), eps_from_score(s, c)))
PARAMETERISATIONS = (EPS, X0, V, VELOCITY, SCORE)


def named(name: str) -> Parameterisation:
    """The parameterisation called ``name`` ("eps", "x0", "v", "velocity", "score"): for recipes stored as JSON."""
    for p in PARAMETERISATIONS:
        if p.name == name:
            return p
    raise ValueError(f"parameterisation must be one of {[p.name for p in PARAMETERISATIONS]}, got {name!r}")


def check_parameterisation(parameterisation) -> Parameterisation:
    if not isinstance(parameterisation, Parameterisation):
        raise TypeError("parameterisation must be one of diffusion_edu's Parameterisation objects "
                        f"(EPS, X0, V, VELOCITY, SCORE), got {parameterisation!r}")
    return parameterisation


# --------------------------------------------------------------------------------------- the denoiser

class Prediction(NamedTuple):
    x0: Tensor
    eps: Tensor


class Denoiser:
    """One interface over any network: ``model(x, t, y)`` trained to predict ``parameterisation`` on ``path``.

    ``path`` is a ``processes.GaussianPath`` (float t in [0, 1]) or a discrete ``NoiseSchedule`` (integer t).
    Each method is one network call; samplers ask for what their update equation uses.
    """

    def __init__(self, model: Model, path, parameterisation: Parameterisation):
        self.model, self.path = model, path
        self.parameterisation = check_parameterisation(parameterisation)
        self.num_classes = getattr(model, "num_classes", None)

    def __call__(self, x: Tensor, t, y: Tensor | None = None) -> Prediction:
        c = self.path.coefficients(t, x)
        return Prediction(*self.parameterisation.to_x0_eps(self.model(x, t, y), x, c))

    def eps(self, x: Tensor, t, y: Tensor | None = None) -> Tensor:
        return self(x, t, y).eps

    def x0(self, x: Tensor, t, y: Tensor | None = None) -> Tensor:
        return self(x, t, y).x0

    def score(self, x: Tensor, t, y: Tensor | None = None) -> Tensor:
        return score_of(self.eps(x, t, y), self.path.coefficients(t, x))

    def velocity(self, x: Tensor, t, y: Tensor | None = None) -> Tensor:
        x0, eps = self(x, t, y)
        return velocity_of(x0, eps, self.path.coefficients(t, x))

    def __repr__(self) -> str:
        return f"Denoiser({type(self.model).__name__}, {self.path!r}, {self.parameterisation!r})"


def as_eps_model(model: Model, path, parameterisation: Parameterisation) -> Model:
    """``model`` as an ε-predictor on ``path``: the contract of chapter 04's samplers (t as the path takes it)."""
    if check_parameterisation(parameterisation) is EPS:
        return model
    denoiser = Denoiser(model, path, parameterisation)

    def eps_model(x: Tensor, t, y: Tensor | None = None) -> Tensor:
        return denoiser.eps(x, t, y)

    eps_model.num_classes = denoiser.num_classes
    return eps_model


def on_schedule(denoiser: Denoiser, T: int = 1000):
    """A continuous-time denoiser seen on a discrete grid: (ε-model of integer k, its ``NoiseSchedule``).

    Step k is time t_k = (k + 1)/T of ``denoiser.path`` and ᾱ_k = α(t_k)²/(α(t_k)² + σ(t_k)²) (``schedules.from_path``):
    x/√(α² + σ²) is then chapter 01's x_k, so any chapter-04 sampler runs on, say, a flow-matching model.
    """
    path = denoiser.path
    schedule = from_path(path, T)

    def eps_model(x: Tensor, k, y: Tensor | None = None) -> Tensor:
        t = (torch.as_tensor(k, device=x.device).to(torch.float64) + 1) / T
        t = t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t
        c = path.coefficients(t, x)
        scale = torch.sqrt(c.alpha**2 + c.sigma**2)  # chapter 01's x_k is x_t / scale: same ε, same x₀
        return denoiser.eps(x * scale, t, y)

    eps_model.num_classes = denoiser.num_classes
    return eps_model, schedule


def _need_derivatives(c: Coefficients) -> None:
    if c.d_alpha is None or c.d_sigma is None:
        raise ValueError("the velocity u = α′x₀ + σ′ε needs a continuous-time path (processes.GaussianPath): "
                         "a discrete NoiseSchedule has no α′, σ′")
