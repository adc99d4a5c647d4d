"""read and write: the data model and its file formats.

- :mod:`~ltaug.io.dataset`: :class:`Dataset` (a COCO/LVIS document kept as read, unknown fields
  included) and its atomic save; :mod:`~ltaug.io.read`: :func:`load_dataset` (json or YOLO folder);
- :mod:`~ltaug.io.index`: the columnar index (numpy arrays over images and annotations, per-class
  counts) every later step reads instead of the records;
- :mod:`~ltaug.io.validate`: record checks with ids; :mod:`~ltaug.io.imagecheck`: image files
  (:mod:`~ltaug.io.jpeghead`: a plain JPEG's header from its markers);
  :mod:`~ltaug.io.policy`: every problem kind's severity and fix; :mod:`~ltaug.io.fix`:
  ``--on-error fix``; :mod:`~ltaug.io.geometry`: polygons, RLE and boxes through pycocotools;
- :mod:`~ltaug.io.yolo`: reading YOLO-seg folders; :mod:`~ltaug.io.yolo_export`: writing them;
- :mod:`~ltaug.io.jsonio` (orjson, atomic writes, checksums), :mod:`~ltaug.io.paths` (file names,
  outputs over inputs refused, image paths kept inside their folder), :mod:`~ltaug.io.lock` (one
  writer per output).

May import: errors, params.
"""
