"""Prepares a model repository for MLServer and prints the expected probabilities.

Usage: serve.py DIR. Trains a small scikit-learn model on the service's feature width (22),
saves it where MLServer's scikit-learn runtime loads it, and prints JSON: rows (null for a
missing value) and predict_proba[:, 1] on those rows as float32, the type the service sends.
"""

import json
import sys
from pathlib import Path

import joblib
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

out = Path(sys.argv[1])
rng = np.random.default_rng(7)
x = rng.normal(size=(3000, 22))
x[rng.random(x.shape) < 0.1] = np.nan
y = ((np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 3]) * 0.5) > 0.4).astype(int)
model = HistGradientBoostingClassifier(max_iter=30, random_state=7).fit(x, y)
(out / "fraud").mkdir(parents=True, exist_ok=True)
joblib.dump(model, out / "fraud" / "model.joblib")
(out / "fraud" / "model-settings.json").write_text(json.dumps({
    "name": "fraud",
    "implementation": "mlserver_sklearn.SKLearnModel",
    "parameters": {"uri": "./model.joblib", "version": "3"},
}))
rows = rng.normal(size=(12, 22)).astype(np.float32)
rows[0, 0] = np.nan
rows[1, :] = np.nan
expected = model.predict_proba(rows.astype(np.float64))[:, 1]
print(json.dumps({
    "rows": [[None if np.isnan(v) else float(v) for v in row] for row in rows],
    "expected": expected.tolist(),
}))
