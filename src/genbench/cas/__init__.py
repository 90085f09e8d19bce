"""Classification Accuracy Score (Ravuri & Vinyals 2019): see ``score.py``."""

from genbench.cas.data import LabelledImages, load_labelled
from genbench.cas.recipes import RECIPES, Recipe, register_recipe
from genbench.cas.score import classification_accuracy_score

__all__ = ["RECIPES", "LabelledImages", "Recipe", "classification_accuracy_score",
           "load_labelled", "register_recipe"]
