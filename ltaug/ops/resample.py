"""``resample``: class-balanced image resampling, written as a rebalanced dataset (math: :mod:`ltaug.rebalance.resample`)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ltaug.ops.base import AnnotationOperation, Param, register
from ltaug.rebalance.resample import METHODS, ROUNDINGS
from ltaug.rebalance.sampling import DEFAULT_RFS_THRESHOLD

if TYPE_CHECKING:
    from ltaug.io.dataset import Dataset

# the parameters each method uses: what provenance records of a resample step
METHOD_PARAMS = {"rfs": ("threshold", "sqrt", "rounding"), "cas": ("samples_per_epoch",),
                 "sqrt": ("samples_per_epoch",), "soft": ("lam", "lam_end", "samples_per_epoch")}


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

    method = Param(None, "how images are drawn", type=str, choices=METHODS, required=True)
    epochs = Param(1, "epochs' worth of samples to write", low=1, metavar="E")
    threshold = Param(DEFAULT_RFS_THRESHOLD, "t in r(c); 0 repeats nothing: plain epochs", type=float, low=0,
                      metavar="T", group="rfs")
    sqrt = Param(True, "r(c) = max(1, sqrt(t / f(c))); --linear: max(1, t / f(c))", flag="linear", group="rfs")
    rounding = Param("stochastic", "per-epoch rounding of r(I)", choices=ROUNDINGS, group="rfs")
    samples_per_epoch = Param(None, "images drawn per epoch (default: all)", type=int, optional=True, low=1,
                              metavar="N", group="cas / sqrt / soft")
    lam = Param(0.5, "soft: lambda, 0 instance-balanced .. 1 class-balanced", type=float, low=0, high=1,
                flag="lambda", metavar="L", group="cas / sqrt / soft")
    lam_end = Param(None, "soft: lambda of the last epoch (linear schedule)", type=float, optional=True, low=0,
                    high=1, flag="lambda-end", metavar="L", group="cas / sqrt / soft")

    def params(self) -> dict:
        """The parameters this method uses (what provenance records)."""
        return {"seed": self.seed, "epochs": self.epochs, **{k: getattr(self, k) for k in METHOD_PARAMS[self.method]}}

    def apply(self, dataset: Dataset) -> tuple[Dataset, dict]:
        from ltaug.rebalance.resample import resample

        out, _ = resample(dataset, self)
        return out, {"op": "resample", "images_before": len(dataset.images), "images_after": len(out.images)}

    @staticmethod
    def report_parts(r: dict) -> list[str]:
        return [f"{r['images_before']} -> {r['images_after']} images"]
