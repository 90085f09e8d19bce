"""genbench: faithful, fast metrics for generative image models."""

__version__ = "0.1.0"

from genbench.api import FIDResult, compute_fid, compute_statistics, evaluate, evaluate_models
from genbench.config import ExtractionConfig
from genbench.errors import GenbenchError
from genbench.evaluation import EvalResult, Evaluation, Pipeline
from genbench.generators import FunctionGenerator, Generator, SeededSource
from genbench.metrics.fid import frechet_distance
from genbench.stats import FeatureStatistics, load_statistics

__all__ = [
    "EvalResult", "Evaluation", "ExtractionConfig", "FIDResult", "FeatureStatistics",
    "FunctionGenerator", "GenbenchError", "Generator", "Pipeline", "SeededSource",
    "__version__", "compute_fid", "compute_statistics", "evaluate", "evaluate_models",
    "frechet_distance", "load_statistics",
]
