"""The documented bounds on what irene accepts, in one place (no imports: the command line's
argument types, the plan reader, the config checks, the tree reader and the tracer all use these).

Every bound is far beyond any real model or campaign; it exists so that a typo or a hostile
input is refused with one line *before* the work, instead of running for hours or allocating
terabytes.
"""

from __future__ import annotations

#: largest batch size, sequence length or context length (tokens) of one call, and the largest
#: serving concurrency (sequences)
MAX_DIMENSION = 1 << 20
#: largest number of tokens one traced call may hold: batch size x (sequence + context length)
MAX_TOKENS_PER_CALL = 1 << 24
#: largest number of elements of one activation tensor of a traced call on the CPU or a GPU
#: (tokens x width, or the eager attention scores: batch x heads x seq x (seq + context)):
#: 2**34 float32 elements are 64 GiB
MAX_ACTIVATION_ELEMENTS = 1 << 34

#: generation estimates (irene.generation): the decode sum's default tolerance — two successive
#: rules must agree within it (percent) — and the most decode context lengths traced for one sum
#: (8 segments)
DEFAULT_TOLERANCE_PCT = 0.1
MAX_DECODE_POINTS = 17

#: model configs: the largest layer count, width (hidden size, feed-forward size, heads x head
#: size), vocabulary, expert count and parameter count a config may declare (the largest public
#: LLMs have ~130 layers, width 53248, vocabularies of 262k, 256 experts and 2T parameters)
MAX_LAYERS = 1024
MAX_WIDTH = 1 << 18
MAX_VOCAB = 1 << 23
MAX_EXPERTS = 1 << 12
MAX_PARAMETERS = 10**13

#: campaign plans and trace sweeps: the most trees one plan or one ``irene trace`` may make
#: (counted before the grid is expanded), and
#: the most YAML nodes its document may hold once aliases are expanded ("billion laughs")
MAX_PLAN_ITEMS = 10_000
MAX_YAML_NODES = 100_000

#: JSON files (trees, configs, predictors): integers longer than this many digits are read as
#: infinite (so the field's range check names them) instead of Python's int-digit ValueError
MAX_INT_DIGITS = 400
#: trees files: the longest line (characters; also the most characters of all blank lines
#: together) and the most blank lines accepted (a tree of a 126-layer LLM is ~2 MB)
MAX_LINE_CHARS = 1 << 26
MAX_BLANK_LINES = 10_000

#: command-line minutes (budgets) and seconds beyond any real run
MAX_MINUTES = 10**6
