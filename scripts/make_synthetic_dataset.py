"""Regenerate the packaged SYNTHETIC demo data set (energies from a formula, not measured)."""

from irene.synthetic import make_synthetic_trees
from irene.tree import write_trees

OUT = "irene/data/synthetic_demo_trees.jsonl.gz"

if __name__ == "__main__":
    trees = make_synthetic_trees(batch_sizes=(1, 8, 32), seq_lens=(32, 128, 256), noise=0.01,
                                 seed=0)
    write_trees(trees, OUT)
    print(f"wrote {len(trees)} SYNTHETIC trees to {OUT}")
