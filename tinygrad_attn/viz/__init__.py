"""Pictures of the computation: graphs of Tensor and Value expressions, attention and mask heatmaps.

graphviz and matplotlib are imported only by the functions that draw, so importing this
package costs nothing but NumPy.
"""

from .attention import attention_weights, plot_attention, plot_heads, plot_layers, plot_mask, plot_masks, translate
from .attention_view import attention_view
from .explorer import explore
from .graph import draw_graph, retain_grads, save
from .notebook import show

__all__ = [
    "attention_view",
    "attention_weights",
    "draw_graph",
    "explore",
    "plot_attention",
    "plot_heads",
    "plot_layers",
    "plot_mask",
    "plot_masks",
    "retain_grads",
    "save",
    "show",
    "translate",
]
