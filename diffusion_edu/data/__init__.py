"""Data: 2-D toys (``toys``) and images (``images``); later chapters add text, audio and video here."""
from .images import DIGITS_RANDOM_STATE, DIGITS_TEST_SIZE, digits, fashion_mnist, mnist, read_idx
from .toys import EIGHT_GAUSSIANS_RADIUS, EIGHT_GAUSSIANS_STD, TOY2D, toy2d

__all__ = ["toy2d", "TOY2D", "EIGHT_GAUSSIANS_STD", "EIGHT_GAUSSIANS_RADIUS",
           "digits", "mnist", "fashion_mnist", "read_idx", "DIGITS_TEST_SIZE", "DIGITS_RANDOM_STATE"]
