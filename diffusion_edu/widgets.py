"""Interactive figures for the chapters, with a static fallback (chapters 01, 04, 05).

Every widget is a thin shell around a plain plotting function that tests can call directly. Only ipywidgets
API common to 7.7 (Colab) and 8 is used (``interactive_output``, ``IntSlider``, ``FloatSlider``,
``Dropdown``, ``VBox``/``HBox``); callbacks end with ``plt.show()``. Where widgets cannot render (nbval,
a static HTML export), ``interact`` still draws the figure for the first value of each control.
"""
from __future__ import annotations

from typing import Callable

import matplotlib.pyplot as plt


def interact(plot: Callable[..., object], **controls):
    """Show ``plot(**values)`` under the given ipywidgets controls, redrawn on every change.

    ``controls`` maps each keyword of ``plot`` to a widget (e.g. ``t=IntSlider(0, 0, 999)``). Returns the
    VBox (controls above the figure). The figure for the initial values is drawn at once, so the cell shows
    something meaningful even without a widget frontend.
    """
    import ipywidgets as w
    from IPython.display import display

    def draw(**values):
        plot(**values)
        plt.show()

    out = w.interactive_output(draw, controls)
    box = w.VBox([w.HBox(list(controls.values())), out])
    display(box)
    return box
