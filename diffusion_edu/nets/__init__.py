"""Networks: one contract, ``model(x, t, y=None) -> prediction`` shaped like x (``embeddings`` module docstring).

``mlp`` (2-D data, chapter 02) and ``unet`` (images, chapter 03); later chapters add a DiT and an autoencoder.
"""
from .embeddings import LabelEmbedding, TimeEmbedding, count_parameters, embed, timestep_embedding
from .mlp import MLPDenoiser
from .unet import UNet

__all__ = ["MLPDenoiser", "UNet", "TimeEmbedding", "LabelEmbedding", "embed", "timestep_embedding",
           "count_parameters"]
