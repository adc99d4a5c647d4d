#!/usr/bin/env bash
# Set up (or reuse) the environment and run the main job on the bundled demo data
# (examples/data: 30 train + 10 val real COCO images with redistributable licenses).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(scripts/setup.sh)
LTAUG="$VENV/bin/ltaug"
DATA=examples/data
OUT=${1:-out/demo}
mkdir -p "$OUT"

echo "== 1. validate the annotations and the image files"
"$LTAUG" validate "$DATA/annotations/train.json" --images "$DATA/images/train"

echo "== 2. class statistics (small set: rare <= 2 images, common <= 5)"
"$LTAUG" stats "$DATA/annotations/train.json" --rare-max 2 --common-max 5 --top 15 --plot "$OUT/train_classes.png"
"$LTAUG" stats "$DATA/annotations/train.json" --rare-max 2 --common-max 5 --json > "$OUT/train_stats.json"

echo "== 3. LVIS-style copy with recomputed image/instance counts and r/c/f bins"
"$LTAUG" convert "$DATA/annotations/train.json" --to lvis --rare-max 2 --common-max 5 -o "$OUT/train_lvis.json"

echo "== 4. COCO -> YOLO-seg -> COCO"
"$LTAUG" convert "$DATA/annotations/train.json" --images "$DATA/images/train" -o "$OUT/yolo_train"
"$LTAUG" convert "$OUT/yolo_train" -o "$OUT/from_yolo.json"
"$LTAUG" validate "$OUT/from_yolo.json" --images "$OUT/yolo_train/images"

echo "== 5. repeat factor sampling (LVIS), 1 epoch's worth, before/after table and plot"
"$LTAUG" resample "$DATA/annotations/train.json" --method rfs --threshold 0.1 --seed 0 --rare-max 2 --common-max 5 \
  --top 10 -o "$OUT/train_rfs.json" --plot "$OUT/train_rfs_shift.png"

echo "== 6. per-class budget: every class at least 8 instances, none above 6x its count"
"$LTAUG" plan "$DATA/annotations/train.json" --min-instances 8 --max-factor 6 --rare-max 2 --common-max 5 \
  --top 10 --plan-json "$OUT/train_plan.json" -o "$OUT/train_planned.json" --plot "$OUT/train_plan_shift.png"

echo "== 7. object bank: every object cut out once, for copy-paste"
"$LTAUG" bank "$DATA/annotations/train.json" --images "$DATA/images/train" -o "$OUT/bank"

echo "== 8. the pixel engine: RFS, then copy-paste of rare-class objects to every class's budget, mosaic, mixup"
"$LTAUG" run examples/pipeline.yaml -o "$OUT/augmented" --workers 2 --overwrite   # the demo may be run again
"$LTAUG" validate "$OUT/augmented/annotations.json" --images "$OUT/augmented/images"

echo "== 9. the HTML report of that run"
"$LTAUG" report "$OUT/augmented" --rare-max 2 --common-max 5

echo
echo "outputs in $OUT/:"
echo "  train_classes.png  class histogram coloured by r/c/f"
echo "  train_stats.json   per-class counts and summary (ltaug stats --json)"
echo "  train_lvis.json    LVIS-style annotations with recomputed counts and bins"
echo "  yolo_train/        YOLO-seg folder (data.yaml, images/, labels/)"
echo "  from_yolo.json     the YOLO folder read back as COCO"
echo "  train_rfs.json     RFS-rebalanced annotations (repeats point to the same images; provenance in \"ltaug\")"
echo "  train_rfs_shift.png, train_plan_shift.png   instances per class before (bars) and after (ticks)"
echo "  train_plan.json    the budget plan (per-image repeats, per-class target/after/status)"
echo "  train_planned.json the planned dataset"
echo "  bank/              object bank (crops, masks, object table, meta.json)"
echo "  augmented/         the rebalanced dataset: annotations.json, images/, run.json"
echo "  augmented/report.html   before/after histograms, per-class table, r/c/f shift, sample images (open it)"
