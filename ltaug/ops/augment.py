"""``augment``: an albumentations pipeline file applied to chosen images (pixels: :mod:`ltaug.pixels.augment`)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ltaug.ops.base import Param, PixelOperation, StepContext, register
from ltaug.pixels.augment import SELECT

if TYPE_CHECKING:
    import numpy as np

    from ltaug.io.dataset import Dataset

_log = logging.getLogger(__name__)


@register
class Augment(PixelOperation):
    """Run an albumentations pipeline, given as albumentations serialises it (A.save(transform,
path, data_format="yaml" or "json")), on chosen images and write them into the dataset: the
augmented image replaces the record's file (a new JPEG), its annotations follow.

which images (--select):
  repeats  every copy after the first of an image an earlier resample repeated (default): the
           repeats of rare-class images become variations instead of identical copies
  all      every image
  --classes / --bins narrow that to images with an object of those classes / frequency bins
  (r, c, f as `ltaug stats` bins them; a resampled dataset's bins are counted on first copies).

what changes: a pipeline of image-only transforms (brightness, contrast, hue, saturation, noise,
blur, ...) changes the pixels and leaves the annotations as they were, byte for byte. A spatial
transform (flip, crop, affine, ...) moves the objects too: masks (polygons or RLE, rasterised
as pycocotools does) are transformed with the image and written as RLE with their tight box;
box-only objects' boxes are transformed by albumentations (COCO format, clipped); an object with
nothing left in the image is dropped and counted.

randomness: each image draws from its own seed, SeedSequence([seed, 0xA06, image id]): one numpy
and one Python generator seeded by it, shared by every transform of the pipeline
(Compose.set_random_state) before the call: the same seed gives the same bytes with any number
of workers. Each augmented image's "ltaug" record names the step, that seed
(image_seed), the parameters albumentations drew (its save_applied_params record; arrays such
as a noise map as their shape, mean and std), and what the record said before (the repeat it was).

examples:
  ltaug augment train_rfs.json --images train2017/ -o out/aug --pipeline examples/augment_photometric.yaml
  ltaug augment train.json --images train2017/ -o out/aug --pipeline flip.yaml --select all --bins r
  ltaug run examples/augment_repeats.yaml      # resample, then augment the repeats"""

    name = "augment"
    summary = "apply an albumentations pipeline file to repeats (or chosen images)"
    replaces_images = True
    paths: ClassVar[tuple[str, ...]] = ("pipeline",)  # relative to a pipeline YAML's folder in `ltaug run`

    pipeline = Param(None, "albumentations pipeline file (A.save's YAML or JSON)", type=str, required=True,
                     metavar="FILE")
    select = Param("repeats", "which images", choices=SELECT, group="which images")
    classes = Param((), "only images with an object of these classes (names or ids)", type=str, nargs="*",
                    metavar="NAMES", group="which images")
    bins = Param((), "only images with an object of these frequency bins", type=str, nargs="*",
                 choices=("r", "c", "f"), metavar="BINS", group="which images")
    rare_max = Param(None, "--bins: r if images <= N (default: an LVIS file's own frequency, else 10)", type=int,
                     optional=True, low=0, metavar="N", group="which images")
    common_max = Param(None, "--bins: c if images <= N (default: an LVIS file's own frequency, else 100)", type=int,
                       optional=True, low=1, metavar="N", group="which images")

    # -- the engine's side ------------------------------------------------------------------

    def prepare(self, ctx: StepContext) -> dict:
        """The pipeline read and checked (one-line errors naming the file), and its SHA-256."""
        from ltaug.io.jsonio import file_sha256
        from ltaug.pixels.augment import read_pipeline

        doc = read_pipeline(self.pipeline)
        return {"pipeline": doc, "file": str(self.pipeline), "sha256": file_sha256(self.pipeline)}

    def input_files(self) -> list[Path]:
        """The pipeline file: a resumed run (and the run before it publishes) refuses it changed,
        since the images made before would come from another pipeline."""
        return [Path(self.pipeline)] if Path(self.pipeline).is_file() else []

    def plan(self, dataset: Dataset, prepared: dict) -> tuple[list[dict], dict, int]:
        """One recipe per chosen image: ``{"image_id", "seed", "before"}`` (its own seed,
        :func:`~ltaug.pixels.augment.image_seed`; what its provenance said before)."""
        from ltaug.pixels.augment import before, build, image_seed, select_images, spatial_names, wanted_classes

        wanted, how = wanted_classes(dataset, self.classes, self.bins, self.rare_max, self.common_max)
        chosen = select_images(dataset.images, dataset.annotations, self.select, wanted)
        recipes = [{"image_id": im["id"], "seed": image_seed(self.seed, im["id"]), "before": before(im)}
                   for im in chosen]
        info: dict[str, Any] = {"select": self.select, "images": len(recipes), **how,
                                "spatial": sorted(spatial_names(build(prepared["pipeline"], prepared["file"]))),
                                "pipeline_file": prepared["file"], "pipeline_sha256": prepared["sha256"],
                                "pipeline": prepared["pipeline"]}
        note = _nothing_note(dataset, self, wanted, len(recipes))
        if note:
            info["note"] = note
            _log.warning("%s", note)
        return recipes, info, len(recipes)

    def sources(self, recipe: dict) -> list:
        return [recipe["image_id"]]

    def open(self, prepared: dict) -> tuple[Any, frozenset[str], str]:
        from ltaug.pixels.augment import build, spatial_names

        compose = build(prepared["pipeline"], prepared["file"])
        return compose, spatial_names(compose), prepared["file"]

    def render(self, recipe: dict, loaded: list, opened: tuple[Any, frozenset[str], str]) -> tuple[np.ndarray, dict]:
        from ltaug.pixels.augment import augment

        (img, record, anns), = loaded
        compose, spatial, where = opened
        out, kept, removed, applied = augment(img, record, anns, compose, spatial, recipe["seed"], where)
        return out, {"kept": kept, "new": [], "removed": removed, "params": {"applied": applied}}

    def recipe_params(self, recipe: dict) -> dict:
        return {"image_seed": recipe["seed"], "before": recipe["before"]}

    @staticmethod
    def report_parts(r: dict) -> list[str]:
        plan = r.get("plan") or {}
        removed = sum(r["removed_per_class"].values())
        parts = [f"{plan.get('select', '?')} augmented"
                 + (" (spatial: " + ", ".join(plan["spatial"]) + ")" if plan.get("spatial") else " (image-only)")]
        if removed:
            parts.append(f"{removed} objects left the image and were dropped")
        if plan.get("note"):
            parts.append(plan["note"])
        return parts


def _nothing_note(dataset: Dataset, step: Augment, wanted: list[int] | None, chosen: int) -> str | None:
    """One line when the step chose no image, saying why."""
    if chosen:
        return None
    from ltaug.pixels.augment import is_repeat

    if step.select == "repeats" and not any(is_repeat(im) for im in dataset.images):
        return ("augment: the input has no repeated images (no earlier resample repeated any): nothing augmented; "
                "resample first, or select 'all'")
    if wanted is not None and not wanted:
        return "augment: no class of the dataset is in the classes / bins asked for: nothing augmented"
    return f"augment: no {'repeated ' if step.select == 'repeats' else ''}image has an object of the classes asked for: " \
           "nothing augmented"
