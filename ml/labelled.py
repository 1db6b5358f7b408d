"""Writes labelled transactions as NDJSON for `antifraud replay`: the training data's generator
(ml/synthetic.py), one API request body per line in event-time order, `is_fraud` the label.

Standard library only (no venv needed):

    python3 ml/labelled.py --out /tmp/labelled.ndjson --customers 2000 --days 3
    antifraud replay --rules deploy/rules/rules.toml /tmp/labelled.ndjson

With train.py's seed, customers and days it writes exactly the transactions the shipped model
was trained and held out on; `--holdout-only` keeps the last two days, which it never saw.
"""

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synthetic  # noqa: E402  (the sibling module, after the path is set)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="the NDJSON file to write")
    p.add_argument("--seed", type=int, default=20261125)
    p.add_argument("--customers", type=int, default=6000)
    p.add_argument("--days", type=int, default=10)
    p.add_argument("--holdout-only", action="store_true",
                   help="only the last two days (train.py's hold-out)")
    return p.parse_args()


def main():
    args = parse_args()
    txs = synthetic.generate(args.seed, args.customers, args.days)
    if args.holdout_only:
        start = synthetic.datetime(2026, 11, 1, tzinfo=synthetic.timezone.utc)
        cut = start + timedelta(days=args.days - 2)
        txs = [tx for tx in txs if synthetic.datetime.fromisoformat(tx["timestamp"]) >= cut]
    with args.out.open("w") as out:
        for tx in txs:
            out.write(json.dumps(tx, separators=(",", ":")))
            out.write("\n")
    fraud = sum(tx["is_fraud"] for tx in txs)
    print(f"{args.out}: {len(txs)} transactions, {fraud} labelled fraud ({fraud / max(1, len(txs)):.2%})")


if __name__ == "__main__":
    main()
