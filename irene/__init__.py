"""irene: predict and explain the inference energy of transformer models (the IrEne method)."""

from irene.tree import Node, Tree, TreeFormatError, read_trees, write_trees

__version__ = "0.1.0"

__all__ = ["Node", "Tree", "TreeFormatError", "read_trees", "write_trees", "__version__"]
