"""How faithful is a saliency map? Black-box metrics that run through the same model and targets.

The model-randomisation sanity check is `onnxplain.evaluation.randomisation.model_randomisation`
(not imported here: it loads scipy.stats and scikit-image's metrics).
"""

from onnxplain.evaluation.metric import EvaluationContext, Metric, MetricResult
from onnxplain.evaluation.runner import EvaluationTable, Item, evaluate, evaluate_maps
from onnxplain.evaluation.saved import read_saved_maps

__all__ = ["EvaluationContext", "EvaluationTable", "Item", "Metric", "MetricResult", "evaluate", "evaluate_maps",
           "read_saved_maps"]
