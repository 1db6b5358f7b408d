"""Trains the shipped fraud model and writes the parity fixtures. Run by `cargo xtask train`.

Reproducible: every random choice is seeded (--seed). Steps:
1. generate labelled synthetic transactions (synthetic.py), oldest first;
2. compute the service's feature vector for each, replaying the history as the service records
   it (features.py);
3. split on time (the last days are the hold-out), train a LightGBM model of 300 trees of depth
   at most 6, compare it with the built-in baseline (ROC AUC, PR AUC);
4. export it to ONNX with its identity and feature schema in the metadata, check the export
   against LightGBM, write the model card (JSON) and fixture rows with expected probabilities;
5. export small models of every supported family (scikit-learn logistic regression, random
   forest, histogram gradient boosting; LightGBM; XGBoost) with their own fixture rows, so that
   the Rust evaluator is tested against ONNX Runtime on each.
"""

import argparse
import json
import math
import sys
from pathlib import Path

import lightgbm
import numpy as np
import onnx
import onnxruntime
import xgboost
from onnxmltools import convert_lightgbm, convert_xgboost
from onnxmltools.convert.common.data_types import FloatTensorType as MlFloat
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import features
import synthetic

ROOT = Path(__file__).resolve().parent.parent
MODEL_NAME = "fraud-gbdt"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=20261125)
    p.add_argument("--customers", type=int, default=6000)
    p.add_argument("--days", type=int, default=10)
    p.add_argument("--version", default="1", help="the shipped model's version")
    p.add_argument("--models-dir", type=Path, default=ROOT / "crates/model/models")
    p.add_argument("--fixtures-dir", type=Path, default=ROOT / "crates/model/tests/fixtures")
    return p.parse_args()


def featurize(txs):
    history = features.History()
    return np.array([features.vector(tx, history.record(tx)) for tx in txs], dtype=np.float64)


def set_metadata(model, name, version):
    # Exporters name the graph with a random UUID; a fixed name makes the file reproducible.
    model.graph.name = name
    meta = {
        "antifraud.model_name": name,
        "antifraud.model_version": version,
        "antifraud.feature_schema_version": str(features.SCHEMA["version"]),
        "antifraud.feature_names": ",".join(features.NAMES),
    }
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model


def onnx_probabilities(model, x):
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    out = session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})
    probs = out[names.index("probabilities")] if "probabilities" in names else out[1]
    return probs[:, 1].astype(np.float64)


def fixture_rows(x, y, rng, n):
    """Rows for parity tests: hold-out rows, half of them fraud so that the probabilities span
    the range; some with every risk score missing, some with extreme counts."""
    idx = np.concatenate([rng.choice(np.flatnonzero(y == label), size=n // 2, replace=False) for label in (0, 1)])
    rng.shuffle(idx)
    rows = x[idx].copy()
    rows[: n // 10, 12:15] = np.nan
    rows[n // 10 : n // 5, 1:5] *= 10
    return rows


def jsonable(rows):
    return [[None if math.isnan(v) else float(v) for v in row] for row in rows]


def write_json(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1, sort_keys=False) + "\n")


def family_models(x_train, y_train):
    """Small models of every family the evaluator supports, as their exporters write them."""
    width = x_train.shape[1]
    sk_input = [("features", FloatTensorType([None, width]))]
    ml_input = [("features", MlFloat([None, width]))]
    opts = lambda est: {id(est): {"zipmap": False}}
    lr = LogisticRegression(max_iter=2000)
    pipe = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), lr)
    pipe.fit(x_train, y_train)
    rf = RandomForestClassifier(n_estimators=40, max_depth=6, random_state=1)
    rf_pipe = make_pipeline(SimpleImputer(strategy="median"), rf)
    rf_pipe.fit(x_train, y_train)
    hgb = HistGradientBoostingClassifier(max_iter=60, max_depth=5, random_state=1)
    hgb.fit(x_train, y_train)
    lgb = lightgbm.LGBMClassifier(n_estimators=60, max_depth=5, num_leaves=24, random_state=1, verbose=-1)
    lgb.fit(x_train, y_train)
    xgb = xgboost.XGBClassifier(n_estimators=60, max_depth=5, random_state=1)
    xgb.fit(x_train, y_train)
    target = {"": 15, "ai.onnx.ml": 3}
    return {
        "sklearn-logistic": (pipe, convert_sklearn(pipe, initial_types=sk_input, options=opts(lr), target_opset=target)),
        "sklearn-random-forest": (rf_pipe, convert_sklearn(rf_pipe, initial_types=sk_input, options=opts(rf), target_opset=target)),
        "sklearn-hist-gradient-boosting": (hgb, convert_sklearn(hgb, initial_types=sk_input, options=opts(hgb), target_opset=target)),
        "lightgbm": (lgb, convert_lightgbm(lgb, initial_types=ml_input, zipmap=False, target_opset=15)),
        "xgboost": (xgb, convert_xgboost(xgb, initial_types=ml_input, target_opset=15)),
    }


def main():
    args = parse_args()
    rng = np.random.default_rng(args.seed)
    txs = synthetic.generate(args.seed, args.customers, args.days)
    x = featurize(txs)
    y = np.array([tx["is_fraud"] for tx in txs], dtype=int)
    cut = synthetic.datetime(2026, 11, 1, tzinfo=synthetic.timezone.utc) + synthetic.timedelta(days=args.days - 2)
    is_test = np.array([features.parse_time(tx["timestamp"]) >= cut for tx in txs])
    x_train, y_train, x_test, y_test = x[~is_test], y[~is_test], x[is_test], y[is_test]
    print(f"{len(txs)} transactions, {y.mean():.2%} fraud; train {len(y_train)}, hold-out {len(y_test)}")

    gbdt = lightgbm.LGBMClassifier(
        n_estimators=300, max_depth=6, num_leaves=48, learning_rate=0.05,
        subsample=0.8, subsample_freq=1, colsample_bytree=0.8, min_child_samples=30,
        random_state=args.seed, deterministic=True, n_jobs=2, verbose=-1,
    )
    gbdt.fit(x_train, y_train)
    p_gbdt = gbdt.predict_proba(x_test)[:, 1]
    p_base = np.array([features.builtin_probability(row) for row in x_test])
    metrics = {
        "hold_out_transactions": int(len(y_test)),
        "hold_out_fraud_share": round(float(y_test.mean()), 4),
        MODEL_NAME: {"roc_auc": round(roc_auc_score(y_test, p_gbdt), 4),
                     "pr_auc": round(average_precision_score(y_test, p_gbdt), 4)},
        "builtin-logistic": {"roc_auc": round(roc_auc_score(y_test, p_base), 4),
                             "pr_auc": round(average_precision_score(y_test, p_base), 4)},
    }
    print(json.dumps(metrics, indent=1))

    width = x.shape[1]
    model = convert_lightgbm(gbdt, initial_types=[("features", MlFloat([None, width]))], zipmap=False, target_opset=15)
    model = set_metadata(model, MODEL_NAME, args.version)
    onnx.checker.check_model(model)
    p_onnx = onnx_probabilities(model, x_test)
    drift = float(np.max(np.abs(p_onnx - p_gbdt)))
    print(f"ONNX Runtime vs LightGBM on the hold-out: max |diff| = {drift:.2e}")
    path = args.models_dir / f"{MODEL_NAME}.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    write_json(args.models_dir / f"{MODEL_NAME}.json", {
        "name": MODEL_NAME,
        "version": args.version,
        "format": "onnx",
        "algorithm": "LightGBM gradient-boosted trees, 300 trees, depth <= 6",
        "output": "probabilities[:, 1]: the probability of the label 1 (fraud)",
        "feature_schema": features.SCHEMA,
        "training": {"data": "synthetic (ml/synthetic.py), not real transactions", "seed": args.seed,
                     "customers": args.customers, "days": args.days, "transactions": len(txs),
                     "hold_out": "the last 2 days"},
        "metrics": metrics,
        "onnx_vs_native_max_abs_diff": drift,
    })

    rows = fixture_rows(x_test, y_test, rng, 200)
    write_json(args.fixtures_dir / f"{MODEL_NAME}.rows.json", {
        "model": f"crates/model/models/{MODEL_NAME}.onnx",
        "rows": jsonable(rows),
        "expected": onnx_probabilities(model, rows).tolist(),
    })

    for name, (native, exported) in family_models(x_train, y_train).items():
        exported = set_metadata(exported, name, "fixture")
        (args.fixtures_dir / f"{name}.onnx").write_bytes(exported.SerializeToString())
        family_rows = fixture_rows(x_test, y_test, rng, 100)
        expected = onnx_probabilities(exported, family_rows)
        native_diff = float(np.max(np.abs(expected - native.predict_proba(family_rows)[:, 1])))
        write_json(args.fixtures_dir / f"{name}.rows.json", {
            "model": f"crates/model/tests/fixtures/{name}.onnx",
            "rows": jsonable(family_rows),
            "expected": expected.tolist(),
            "onnxruntime_vs_native_max_abs_diff": native_diff,
        })
        print(f"fixture {name}: ONNX Runtime vs native max |diff| = {native_diff:.2e}")

    # Feature parity: a few customers' transactions as the API receives them, with the vectors
    # this module computes; the Rust test replays them through the service's code.
    picked = {tx["customer_id"] for tx in txs if tx["is_fraud"]}
    picked = sorted(picked)[:6] + sorted({tx["customer_id"] for tx in txs} - picked)[:6]
    last = max(features.parse_time(tx["timestamp"]) for tx in txs)
    window_start = last - synthetic.timedelta(hours=20)
    sample = [tx for tx in txs if tx["customer_id"] in picked and features.parse_time(tx["timestamp"]) > window_start]
    sample += [sample[i] for i in range(0, len(sample), 17)]  # retries: counted once
    history = features.History()
    cases = []
    for tx in sample:
        vec = features.vector(tx, history.record(tx))
        body = {k: v for k, v in tx.items() if v is not None}
        cases.append({"transaction": body, "features": jsonable([vec])[0],
                      "builtin_probability": features.builtin_probability(vec)})
    write_json(args.fixtures_dir / "features.json", {
        "now": last.isoformat(), "schema": features.SCHEMA, "cases": cases})
    print(f"wrote {path} ({path.stat().st_size} bytes) and fixtures in {args.fixtures_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
