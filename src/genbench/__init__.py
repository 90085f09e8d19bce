"""genbench: faithful, fast metrics for generative image models."""

__version__ = "0.1.0"

from genbench.api import FIDResult, compute_fid, compute_statistics, evaluate
from genbench.errors import GenbenchError
from genbench.metrics.fid import frechet_distance
from genbench.stats import FeatureStatistics, load_statistics

__all__ = [
    "FIDResult", "FeatureStatistics", "GenbenchError", "__version__", "compute_fid",
    "compute_statistics", "evaluate", "frechet_distance", "load_statistics",
]
