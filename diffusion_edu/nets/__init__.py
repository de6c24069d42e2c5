"""Networks: one contract, ``model(x, t, y=None) -> prediction`` shaped like x (``embeddings`` module docstring).

``mlp`` (2-D data, chapter 02), ``unet`` (images, chapter 03), ``autoencoder`` (latents, chapter 09) and ``dit``
(the diffusion transformer and its conditioning variants, chapter 10).
"""
from .embeddings import LabelEmbedding, TimeEmbedding, count_parameters, embed, timestep_embedding
from .dit import DiT
from .mlp import MLPDenoiser
from .unet import UNet

__all__ = ["MLPDenoiser", "UNet", "DiT", "TimeEmbedding", "LabelEmbedding", "embed", "timestep_embedding",
           "count_parameters"]
