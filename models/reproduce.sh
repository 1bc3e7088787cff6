#!/usr/bin/env bash
# Reproduce the bundled model from the shared data (run from the repository root, venv active).
# 1. patient-level cross-validation, 3 folds (resumable: re-run the same command).
# 2. the shipped network: the same recipe trained on all images (no held-out set of its own).
# 3. the bundle: weights + card; operating points and metrics from the out-of-fold CV predictions.
set -euo pipefail
D=${CXR_SHARED_DATA:-../shared/data}
DATA=(--dataset "nih,csv=$D/nih/Data_Entry_2017_subset.csv,images=$D/nih/images"
      --dataset "plain,csv=$D/kermany/labels.csv,root=$D,mapping=$D/label_map_to_chexpert.csv,name=kermany")
# Box supervision: the NIH radiologist boxes of the TRAINING images also train the maps (per-cell loss,
# weight 0.3); each fold's held-out boxes are only scored (pointing game). OMP_NUM_THREADS=1 lets two or
# three of these runs share a 2-core machine efficiently (run them in parallel with --fold K, then `cv`).
RECIPE=(--arch resnet18_os16 --input-size 160 --epochs 8 --batch-size 32 --lr 1e-3 --workers 0 --cache-dir cache --quiet
        --bbox "$D/nih/bbox.csv" --bbox-root "$D" --box-supervision --box-loss cells --box-weight 0.3)
cxrviewer-train cv "${DATA[@]}" "${RECIPE[@]}" --folds 3 --patience 3 --max-train kermany=1000 --out runs/cvbox
cxrviewer-train fit "${DATA[@]}" "${RECIPE[@]}" --folds 1 --max-train kermany=1500 --out runs/allbox
cxrviewer-train bundle --cv runs/cvbox --run runs/allbox --out models/cxr-resnet18os16-160.json \
  --name cxr-resnet18os16-160-box-nih-kermany --readme models/README.md --reproduce "$(cat models/reproduce.sh)" \
  --selection "$(cat models/selection.md)"
