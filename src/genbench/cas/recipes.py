"""Classifier recipes for CAS: network, optimisation and augmentation, chosen by image size.

A recipe is data, not code: its fields go into the JSON record and into the cache key of the
real-data baseline, so a baseline is reused only for the identical recipe. Add one with
``register_recipe``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

from torch import nn

from genbench.cas.networks import ResNet50, SmallResNet
from genbench.errors import GenbenchError
from genbench.registry import Registry


@dataclass(frozen=True)
class Recipe:
    name: str
    network: str              # key of NETWORKS
    width: int                # network width parameter (SmallResNet), unused by resnet50
    min_size: int             # image sizes (shorter side, px) the recipe is meant for
    max_size: int
    input_size: int | None    # images are resized to this (None: trained at their own size)
    epochs: int
    batch_size: int           # global batch (split across torchrun processes)
    lr: float                 # peak learning rate (SGD, Nesterov momentum 0.9)
    warmup_epochs: float      # linear warm-up from 0 to ``lr``
    schedule: str             # "linear" (to 0 after warm-up) or "steps" (÷10 at milestones)
    milestones: tuple[int, ...]
    weight_decay: float
    label_smoothing: float
    crop_padding: int         # random crop after zero padding by this many pixels (0: none)
    flip: bool                # random horizontal flips

    def to_dict(self) -> dict:
        return asdict(self)

    def with_options(self, **options) -> Recipe:
        unknown = set(options) - set(self.to_dict())
        if unknown:
            raise GenbenchError(f"unknown recipe option(s) {', '.join(sorted(unknown))}")
        return replace(self, **{k: v for k, v in options.items() if v is not None})


NETWORKS: Registry[Callable[[Recipe, int, int], nn.Module]] = Registry("CAS network")
NETWORKS.register("small-resnet",
                  lambda r, classes, channels: SmallResNet(classes, channels, r.width))
NETWORKS.register("resnet50", lambda r, classes, channels: ResNet50(classes, channels))

RECIPES: Registry[Recipe] = Registry("CAS recipe")


def register_recipe(recipe: Recipe) -> Recipe:
    if recipe.network not in NETWORKS:
        raise ValueError(f"recipe {recipe.name!r}: unknown network {recipe.network!r}")
    return RECIPES.register(recipe.name, recipe)


register_recipe(Recipe(
    name="small-resnet", network="small-resnet", width=24, min_size=16, max_size=64,
    input_size=None, epochs=8, batch_size=128, lr=0.1, warmup_epochs=0.5, schedule="linear",
    milestones=(), weight_decay=5e-4, label_smoothing=0.1, crop_padding=2, flip=True))
# The CAS paper's ImageNet classifier (App. A.1): ResNet-50, 90 epochs, SGD momentum, LR
# warmed up linearly over 5 epochs, ÷10 at epochs 30, 60, 80; batch 1024 with peak LR 0.4
# (0.1 per 256, Goyal et al.). Crops here are padded random crops at 224 px after resizing
# (not Inception-style random-resized crops).
register_recipe(Recipe(
    name="resnet50", network="resnet50", width=64, min_size=65, max_size=10_000,
    input_size=224, epochs=90, batch_size=1024, lr=0.4, warmup_epochs=5, schedule="steps",
    milestones=(30, 60, 80), weight_decay=1e-4, label_smoothing=0.0, crop_padding=16,
    flip=True))


def recipe_for(name: str, image_size: int) -> Recipe:
    """``name`` or, for "auto", the recipe whose size range holds ``image_size``."""
    if name != "auto":
        return RECIPES.lookup(name, hint=" or auto")
    for recipe in RECIPES.values():
        if recipe.min_size <= image_size <= recipe.max_size:
            return recipe
    raise GenbenchError(f"no CAS recipe for {image_size}-px images; choose one with --recipe")
