"""The pixel side: pure functions over images, masks and objects, and the object bank.

- :mod:`~ltaug.pixels.functional`: resize, feather, blend, mix, JPEG codecs (numpy/OpenCV);
- :mod:`~ltaug.pixels.masks`: mask arithmetic on RLE (occlusion, warps);
  :mod:`~ltaug.pixels.imagefile`: reading image files with one-line errors;
- :mod:`~ltaug.pixels.bank`: the object bank (crops, masks, flags) that copy-paste draws from;
  :mod:`~ltaug.pixels.bank_codec`: how its crops and masks are stored (jpeg, png, raw);
  :mod:`~ltaug.pixels.bank_select`: which objects go in (classes, bins, a seeded cap per class);
- :mod:`~ltaug.pixels.blending`: Poisson modes and LAB colour harmonisation;
  :mod:`~ltaug.pixels.blend_compare`: the same objects pasted in each mode, side by side;
- :mod:`~ltaug.pixels.copy_paste`, :mod:`~ltaug.pixels.mosaic`, :mod:`~ltaug.pixels.mixup`,
  :mod:`~ltaug.pixels.augment`: each operation's planning (seeded, pure) and rendering of one recipe;
  :mod:`~ltaug.pixels.placement` (copy-paste's placement rules, affine objects) and
  :mod:`~ltaug.pixels.backgrounds` (pasting onto a folder of background photos).

An operation's parameters are declared in :mod:`ltaug.ops`, not here.

May import: errors, params, pool, io, stats (augment's frequency bins), rebalance (the planner's target gives
copy-paste its budget).
"""
