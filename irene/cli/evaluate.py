"""``irene evaluate GOLD PRED``: percentage error of predictions per node type."""

from __future__ import annotations

import argparse

from irene.cli import UserError
from irene.cli.options import add_json_option, print_result, read_input_trees


def add_parser(sub: argparse._SubParsersAction) -> None:
    from irene.schema import REPORT_ORDER  # not irene.evaluation: building the parser stays light

    p = sub.add_parser("evaluate", help="mean absolute percentage error per node type",
                       description="Compare PRED's predicted_energy with GOLD's "
                                   "ground_truth_energy node by node (trees joined by model, "
                                   "batch size, sequence length and settings; nodes by id).")
    p.add_argument("gold", help="JSONL trees with ground_truth_energy")
    p.add_argument("pred", help="JSONL trees with predicted_energy (same trees)")
    p.add_argument("--node_types", "--node-types", default=",".join(REPORT_ORDER),
                   help="comma-separated node types (default: ml,module,model)")
    add_json_option(p, quiet="the MAPE % of the last node type asked for (default: model)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from irene.evaluation import REPORT_ORDER, error_stats, mape_by_node_type, pair_predictions

    node_types = [t.strip() for t in args.node_types.split(",") if t.strip()]
    bad = [t for t in node_types if t not in REPORT_ORDER]
    if bad or not node_types:
        raise UserError(f"--node_types: unknown node type(s) {bad}; choose from {REPORT_ORDER}")
    paired = pair_predictions(read_input_trees(args.gold), read_input_trees(args.pred))
    mape = mape_by_node_type(paired, node_types)
    if print_result(args, mape, float(mape[node_types[-1]])):
        return 0
    print(f"{'node type':<10} {'nodes':>7} {'MAPE %':>8} {'median %':>9} {'p90 %':>7} "
          f"{'max %':>8} {'bias %':>8}")
    stats = {s.group: s for s in error_stats(paired, "node_type")}
    for s in (stats[kind] for kind in node_types if kind in stats):
        if s.group in node_types:
            print(f"{s.group:<10} {s.count:>7} {s.mape:>8.2f} {s.median_ape:>9.2f} "
                  f"{s.p90_ape:>7.2f} {s.max_ape:>8.2f} {s.mean_signed:>+8.2f}")
    return 0
