"""irene: predict and explain the inference energy of transformer models (the IrEne method)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from irene.tree import Node, Tree, TreeFormatError, read_trees, write_trees

__version__ = "0.1.0"

__all__ = ["Node", "Tree", "TreeFormatError", "read_trees", "write_trees", "__version__"]


def __getattr__(name: str) -> Any:
    """The tree names, imported from :mod:`irene.tree` when first asked for (PEP 562), so that
    ``irene --help`` does not read the tree module."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from irene import tree

    return getattr(tree, name)
