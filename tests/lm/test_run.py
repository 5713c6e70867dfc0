"""lm/run.py's per-example export holds only what strict JSON readers accept."""
import json
import math

from prunelora.lm.run import defined


def test_an_undefined_per_example_measure_is_exported_as_null():
    example = {"id": "p1", "avg_nll": math.inf, "truth_ratio": math.nan, "tokens": 7,
               "perturbed_avg_nll": [1.5, -math.inf], "paraphrased_avg_nll": 0.25}
    exported = {k: defined(v) for k, v in example.items()}
    assert exported == {"id": "p1", "avg_nll": None, "truth_ratio": None, "tokens": 7,
                        "perturbed_avg_nll": [1.5, None], "paraphrased_avg_nll": 0.25}
    assert json.loads(json.dumps(exported, allow_nan=False)) == exported
