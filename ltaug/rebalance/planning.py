"""Per-class budget planning: from a target on the class distribution to image repeats.

The user states what the rebalanced data should look like, per class c with n_c instances:

* ``min_instances`` N: every class at least N instances;
* ``exponent`` g: n'_c >= n_max * (n_c / n_max)^g, a flatter power law (g = 1 keeps the
  distribution, g = 0 asks every class to match the largest, g = 0.5 is square-root);
* ``max_factor`` K: no class grows beyond K * n_c (also bounds the collateral growth of
  frequent classes that share images with rare ones).

The target is T_c = max(N, n_max (n_c / n_max)^g), capped at K n_c. Finding the fewest
image repeats that reach every T_c without crossing any cap is an integer covering problem;
the planner solves it greedily, rarest class first: it repeats the images of the class
round-robin (so no single image is copied many times while others are not), preferring
images whose other objects belong to classes already at target, and skips any repeat that
would push some class over its cap. Each class ends ``met``, ``capped`` (the cap is below
what was requested) or ``short``: its images cannot be repeated further without pushing a
co-occurring class over its cap. What a class still lacks is its ``deficit``: the number of
objects copy-paste would have to add (``paste_budget`` in the summary).

The plan is pure and serialisable: per-image repeat counts plus the per-class table.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

from ltaug.errors import SpecError
from ltaug.io.dataset import Dataset
from ltaug.io.index import DatasetIndex
from ltaug.params import Param
from ltaug.rebalance.sampling import ClassImages, round_up

PLAN_FORMAT = "ltaug-plan/1"
_log = logging.getLogger(__name__)
TARGET_FIELDS = {  # the target's parameters, declared once: `ltaug plan`'s flags, paste's budget
    "min_instances": Param(None, "every class at least N instances", type=int, optional=True, low=1, metavar="N",
                           name="min_instances"),
    "exponent": Param(None, "at least n_max (n_c / n_max)^G (1 keeps the distribution, 0.5 is square-root "
                            "flattening, 0 asks every class to match the largest)", type=float, optional=True,
                      low=0, high=1, metavar="G", name="exponent"),
    "max_factor": Param(None, "no class above K times its count", type=float, optional=True, low=1, metavar="K",
                        name="max_factor"),
}


@dataclass(frozen=True)
class Target:
    """What the rebalanced data should reach per class (see the module's docstring): at least
    ``min_instances``, at least ``n_max (n_c / n_max) ** exponent``, at most ``max_factor`` times
    the class's count. A missing or out-of-range value raises :class:`~ltaug.errors.SpecError` naming it."""

    min_instances: int | None = None
    exponent: float | None = None
    max_factor: float | None = None

    def __post_init__(self) -> None:
        for name, param in TARGET_FIELDS.items():
            param.validate(getattr(self, name))
        if self.min_instances is None and self.exponent is None:
            raise SpecError("target", "needs min_instances and/or exponent")

    def per_class(self, before: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(requested, target, cap) per class: target = requested limited by the cap.

        Classes without instances get target 0: nothing can be repeated or pasted for them.
        """
        before = np.asarray(before, dtype=np.float64)
        requested = np.where(before > 0, np.maximum(self.asked(before), before), 0.0)
        cap = self.cap(before)
        return requested, np.minimum(requested, cap), cap

    def asked(self, before: np.ndarray) -> np.ndarray:
        """What min_instances and exponent ask per class: max(N, ceil(n_max (n_c / n_max)^g)),
        whatever the class has (:meth:`per_class` never asks a class for fewer than it has)."""
        before = np.asarray(before, dtype=np.float64)
        target = np.zeros_like(before)
        if self.min_instances is not None:
            target = np.maximum(target, self.min_instances)
        if self.exponent is not None and before.max(initial=0) > 0:
            top = before.max()
            target = np.maximum(target, np.ceil(top * (before / top) ** self.exponent - 1e-9))
        return target

    def cap(self, before: np.ndarray) -> np.ndarray:
        """floor(max_factor n_c) per class (inf without max_factor)."""
        before = np.asarray(before, dtype=np.float64)
        return np.full_like(before, np.inf) if self.max_factor is None else np.floor(self.max_factor * before + 1e-9)


def _image_class_table(index: DatasetIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR over images: classes and instance counts of image i are ``cls[s[i]:s[i+1]]``, ``num[...]``."""
    n_c = max(index.num_categories, 1)
    keys, num = np.unique(index.ann_image_pos * n_c + index.ann_category_pos, return_counts=True)
    img, cls = np.divmod(keys, n_c)
    start = np.zeros(index.num_images + 1, dtype=np.int64)
    np.cumsum(np.bincount(img, minlength=index.num_images), out=start[1:])
    return start, cls, num.astype(np.float64)


def plan_repeats(index: DatasetIndex, target: Target) -> dict:
    """Greedy repeat plan; returns ``counts`` (uses per image, >= 1), ``target``, ``cap``, ``after``."""
    before = index.instance_counts.astype(np.float64)
    requested, goal, cap = target.per_class(before)
    start, img_cls, img_num = _image_class_table(index)
    per_class = ClassImages.from_index(index)
    counts = np.ones(index.num_images, dtype=np.int64)
    after = before.copy()

    for c in np.argsort(before, kind="stable"):
        if before[c] == 0 or after[c] >= goal[c]:
            continue
        imgs = per_class.images[per_class.start[c]:per_class.start[c + 1]]
        gain = np.array([img_num[start[i]:start[i + 1]][img_cls[start[i]:start[i + 1]] == c][0] for i in imgs])
        # prefer images whose other objects are in classes already at target (less collateral)
        collateral = np.array([sum(n for k, n in zip(img_cls[start[i]:start[i + 1]], img_num[start[i]:start[i + 1]])
                                   if k != c and after[k] >= goal[k]) for i in imgs])
        order = np.lexsort((imgs, collateral / gain))
        imgs, gain = imgs[order], gain[order]
        while after[c] < goal[c]:
            # how many more copies each image may get before some class in it hits its cap
            room = np.array([_room(img_cls[start[i]:start[i + 1]], img_num[start[i]:start[i + 1]], after, cap)
                             for i in imgs])
            usable = room > 0
            if not usable.any():
                break
            per_round = gain[usable].sum()
            rounds = int((goal[c] - after[c]) // per_round)
            if rounds >= 1 and (room[usable] >= rounds).all():   # whole rounds at once
                add = np.where(usable, rounds, 0)
            else:                                                # one pass, image by image
                add = np.zeros(imgs.size, dtype=np.int64)
                need = goal[c] - after[c]
                for j in np.flatnonzero(usable):
                    if need <= 0:
                        break
                    add[j] = 1
                    need -= gain[j]
            for i, a in zip(imgs[add > 0], add[add > 0]):
                counts[i] += a
                sl = slice(start[i], start[i + 1])
                after[img_cls[sl]] += a * img_num[sl]
    return {"counts": counts, "requested": requested, "target": goal, "cap": cap, "after": after}


def _room(classes: np.ndarray, nums: np.ndarray, after: np.ndarray, cap: np.ndarray) -> int:
    """Copies of an image that keep every class in it within its cap."""
    free = np.floor((cap[classes] - after[classes]) / nums)
    m = free.min()
    return int(m) if np.isfinite(m) else 1 << 30


def make_plan(dataset: Dataset, target: Target, *, rare_max: int | None = None, common_max: int | None = None) -> dict:
    """The serialisable plan: target, per-image repeats, and the per-class before/after table."""
    from ltaug.rebalance.shift import class_shift

    ix = dataset.index
    res = plan_repeats(ix, target)
    shift = class_shift(dataset, res["counts"], rare_max=rare_max, common_max=common_max)
    row_of = {r["id"]: r for r in shift["classes"]}
    for cid, wish, goal in zip(ix.category_ids.tolist(), res["requested"], res["target"]):
        row = row_of[cid]
        row["requested"], row["target"] = int(wish), int(goal)
        row["deficit"] = max(0, int(goal) - row["after_instances"])
        row["status"] = ("no instances" if row["before_instances"] == 0 else
                         "short" if row["deficit"] else "capped" if goal < wish else "met")
    shift["summary"]["classes_short"] = sum(r["status"] == "short" for r in shift["classes"])
    shift["summary"]["classes_capped"] = sum(r["status"] == "capped" for r in shift["classes"])
    shift["summary"]["paste_budget"] = sum(r["deficit"] for r in shift["classes"])
    plan = {"format": PLAN_FORMAT, "source": str(dataset.path) if dataset.path else None,
            "target": asdict(target), "image_ids": ix.image_ids, "repeats": res["counts"], **shift}
    note = plan_note(ix, target, res["counts"], shift["summary"]["paste_budget"])
    if note:  # only then: the plan of parameters that change something is the same document as before
        plan["note"] = note
        _log.warning("%s", note)
    return plan


# -- when the parameters change nothing -------------------------------------------------------------

def describe_target(target: Target) -> str:
    """``min_instances 12, max_factor 8``: the target's parameters that are set, by name."""
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in asdict(target).items() if v is not None)


def target_note(index: DatasetIndex, target: Target, *, what: str = "plan") -> str | None:
    """One line when ``target`` asks no class of ``index`` for more instances, naming the value
    that would (computed from the data), else None. ``what`` names the caller (``plan``,
    ``paste budget``). Two cases: every class already meets what the target asks (min_instances
    at or under the rarest class, exponent 1), or max_factor caps every class that asks for
    more at its own count."""
    before = index.instance_counts.astype(np.float64)
    has = before > 0
    if not has.any():
        return None
    requested, goal, _ = target.per_class(before)
    if (goal[has] > before[has]).any():
        return None
    names = index.category_names
    head = f"{what} with {describe_target(target)} asks for nothing"
    wants = has & (requested > before)
    if not wants.any():
        rare = int(np.flatnonzero(has)[np.argmin(before[has])])
        n_min = int(before[rare])
        would = []
        if target.min_instances is not None:
            would.append(f"min_instances above {n_min} would raise it")
        if target.exponent is not None and float(before[has].max()) > n_min:
            would.append("an exponent below 1 would flatten the distribution")
        return (f"{head}: every class already has what it asks (the rarest, {names[rare]}, has "
                f"{n_min} instance{'s' if n_min != 1 else ''}); " + " and ".join(would or ["a higher target would"]))
    # max_factor holds every class that asks for more at its count: K n_c < n_c + 1
    pos = np.flatnonzero(wants)
    top = int(pos[np.argmax(before[pos])])  # the smallest factor lets the largest of these grow first
    n = int(before[top])
    return (f"{head}: max_factor {target.max_factor:g} caps every class that asks for more at its own count "
            f"(e.g. {names[top]}: {n} instances, asks {int(requested[top])}); a max_factor of at least "
            f"{round_up((n + 1) / n)} lets the target of {names[top]} rise above its count")


def plan_note(index: DatasetIndex, target: Target, counts: np.ndarray, paste_budget: int) -> str | None:
    """One line when a plan repeats no image (:func:`target_note`, or every image of a class under
    its target holds a class already at its cap), with the max_factor that would repeat one, else None."""
    note = target_note(index, target)
    if note or (np.asarray(counts) > 1).any():
        return note
    before = index.instance_counts.astype(np.float64)
    requested, goal, _ = target.per_class(before)
    start, img_cls, img_num = _image_class_table(index)
    wanting = (before > 0) & (goal > before)
    if not wanting.any() or target.max_factor is None:
        return None
    need = np.inf  # the smallest K at which some image of a class under target has room for one more copy
    for i in range(index.num_images):
        cls, num = img_cls[start[i]:start[i + 1]], img_num[start[i]:start[i + 1]]
        if cls.size and wanting[cls].any():
            need = min(need, float(((before[cls] + num) / before[cls]).max()))
    return (f"plan with {describe_target(target)} repeats no image: every image of a class under its target also "
            f"holds a class that one more copy would push over max_factor {target.max_factor:g}; "
            f"{paste_budget} objects are left to copy-paste (paste budget)"
            + (f"; a max_factor of at least {round_up(need)} would repeat an image" if np.isfinite(need) else ""))
