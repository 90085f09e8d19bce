"""Generators: models asked for images by seed (``Generator.sample(seeds, labels)``), and the
seeded image source that makes any of them an input like a folder or a data set."""

from genbench.generators.base import FunctionGenerator, Generator, as_generator
from genbench.generators.source import SeededSource

__all__ = ["FunctionGenerator", "Generator", "SeededSource", "as_generator"]
