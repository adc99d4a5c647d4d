"""``resample``: class-balanced image resampling, written as a rebalanced dataset (math: :mod:`ltaug.rebalance.resample`)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ltaug.ops.base import AnnotationOperation, Param, register
from ltaug.rebalance.methods import METHODS, ResampleMethod

if TYPE_CHECKING:
    from ltaug.io.dataset import Dataset


@register
class Resample(AnnotationOperation):
    """Resample the images of a dataset so rare classes are seen more often, and write E epochs'
worth of samples as one COCO/LVIS file (or the per-image repeat factors for an online
sampler). Repeated images get new image ids pointing to the same file_name; annotations are
copied with new ids; every image and annotation carries an "ltaug" provenance record.
LVIS category fields (frequency, image_count, ...) are kept as in the input.

methods:
  rfs   repeat factor sampling (LVIS, Gupta et al. 2019): r(c) = max(1, sqrt(t / f(c))) with
        f(c) the fraction of images containing c; each image repeated r(I) = max over its
        classes, rounded stochastically per epoch (detectron2) or up (--rounding ceil,
        mmdetection). Images without annotations keep r = 1.
  cas   class-aware sampling (Shen et al. 2016; cRT, Kang et al. 2020): pick a class
        uniformly, then one of its images.
  sqrt  square-root sampling: pick class c with probability ~ sqrt(n_c) (n_c = its images).
  soft  soft-balance sampling (Peng et al. CVPR 2020): p_c = lambda/C + (1-lambda) n_c/N,
        between instance-balanced (lambda 0) and class-balanced (lambda 1); --lambda-end
        moves lambda linearly over the epochs (the paper's hybrid schedule).
  cas/sqrt/soft draw --samples-per-epoch images per epoch (default: the number of images);
  an image may be drawn several times or not at all.

examples:
  ltaug resample train.json --method rfs --threshold 0.001 --seed 0 -o train_rfs.json
  ltaug resample train.json --method rfs --repeat-factors rf.json     # for the trainer's online sampler
  ltaug resample train.json --method soft --lambda 0 --lambda-end 1 --epochs 12 --seed 0 -o soft.json --plot shift.png"""

    name = "resample"
    summary = "class-balanced resampling (rfs, cas, sqrt, soft)"

    method = Param(None, "how images are drawn (a method registered in ltaug.rebalance.methods.METHODS)",
                   type=str, choices=METHODS.names, required=True)
    epochs = Param(1, "epochs' worth of samples to write", low=1, metavar="E")

    @classmethod
    def declared(cls) -> dict[str, Param]:
        """method and epochs, then the parameters of every registered method (in registration
        order), then seed: a method registered later brings its own."""
        own = {k: p for k, p in cls.parameters.items() if k != "seed"}
        for method in METHODS:
            own.update((k, p) for k, p in method.declared().items() if k not in own)
        return {**own, "seed": cls.parameters["seed"]}

    def method_spec(self) -> ResampleMethod:
        """The method with its own parameters (those of other methods are not used)."""
        cls = METHODS.get(self.method)
        return cls(**{k: getattr(self, k) for k in cls.declared()})

    def params(self) -> dict:
        """seed, epochs and the method's own parameters (what provenance records)."""
        return {"seed": self.seed, "epochs": self.epochs, **self.method_spec().params()}

    def apply(self, dataset: Dataset) -> tuple[Dataset, dict]:
        """The resampled dataset and the step's report: images before and after,
        ``change_per_class`` (instances gained or lost per category id, classes that changed) and
        ``note`` when the parameters change (almost) nothing (:meth:`ResampleMethod.note`)."""
        import numpy as np

        from ltaug.rebalance.resample import resample

        out, drawn = resample(dataset, self)
        ix = dataset.index
        after = np.bincount(ix.ann_category_pos, weights=drawn.counts[ix.ann_image_pos],
                            minlength=ix.num_categories).astype(np.int64)
        change = after - ix.instance_counts
        report = {"op": "resample", "images_before": len(dataset.images), "images_after": len(out.images),
                  "change_per_class": {int(c): int(d) for c, d in zip(ix.category_ids.tolist(), change.tolist()) if d}}
        if drawn.note:
            report["note"] = drawn.note
        return out, report

    @staticmethod
    def report_parts(r: dict) -> list[str]:
        return [f"{r['images_before']} -> {r['images_after']} images"]
