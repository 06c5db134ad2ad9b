"""How faithful is a saliency map? Black-box metrics that run through the same model and targets."""

from onnxplain.evaluation.metric import EvaluationContext, Metric, MetricResult
from onnxplain.evaluation.runner import EvaluationTable, Item, evaluate

__all__ = ["EvaluationContext", "EvaluationTable", "Item", "Metric", "MetricResult", "evaluate"]
