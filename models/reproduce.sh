#!/usr/bin/env bash
# Reproduce the bundled model from the shared data (run from the repository root, venv active).
# About 25 CPU-minutes per fold on 2 cores (fp32); folds are resumable (re-run the same command).
set -euo pipefail
D=${CXR_SHARED_DATA:-../shared/data}
cxrviewer-train cv \
  --dataset nih,csv=$D/nih/Data_Entry_2017_subset.csv,images=$D/nih/images \
  --dataset plain,csv=$D/kermany/labels.csv,root=$D,mapping=$D/label_map_to_chexpert.csv,name=kermany \
  --arch resnet18_os16 --input-size 160 --epochs 8 --patience 3 --folds 3 --batch-size 32 --lr 1e-3 \
  --max-train kermany=1000 --workers 1 --cache-dir cache --bbox $D/nih/bbox.csv --bbox-root $D \
  --out runs/cv160os16 --quiet
cxrviewer-train bundle --cv runs/cv160os16 --fold 0 --out models/cxr-resnet18os16-160.json \
  --name cxr-resnet18os16-160-nih-kermany --readme models/README.md --reproduce "models/reproduce.sh"
