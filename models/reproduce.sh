#!/usr/bin/env bash
# Reproduce the bundled model from the shared data (run from the repository root, venv with ".[train]" active).
# 1. pack the training set once (the app's own preprocessing, 256 px; JPEG q72 so it travels to a GPU machine).
# 2. on a GPU: patient-level 3-fold cross-validation + the all-data fit (models/search/gpu_search.py runs both
#    in parallel and writes held-out predictions; each `cxrviewer-train` command below also runs on its own).
# 3. the bundle: weights + card; calibration, operating points and metrics from the out-of-fold CV predictions.
set -euo pipefail
D=${CXR_SHARED_DATA:-../shared/data}
cxrviewer-train pack --dataset "nih,csv=$D/nih/Data_Entry_2017_subset.csv,images=$D/nih/images" \
  --dataset "plain,csv=$D/kermany/labels.csv,root=$D,mapping=$D/label_map_to_chexpert.csv,name=kermany" \
  --bbox "$D/nih/bbox.csv" --bbox-root "$D" --input-size 256 --quality 72 --max-images kermany=1400 \
  --cache-dir cache --out runs/data256.npz
LABELS="No Finding,Cardiomegaly,Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other"
RECIPE=(--packed runs/data256.npz --arch efficientnet_lite0_os16 --init imagenet --input-size 256 --batch-size 32
        --lr 5e-4 --patience 6 --labels "$LABELS" --box-supervision --box-loss cells --box-weight 0.3 --quiet)
for SEED in 0 1; do   # two seeds of one recipe (each seed has its own patient-level split)
  cxrviewer-train cv "${RECIPE[@]}" --epochs 20 --folds 3 --seed $SEED --max-train kermany=1000 --out runs/gpu/cv_lite0s$SEED
done
cxrviewer-train fit "${RECIPE[@]}" --epochs 20 --folds 1 --seed 0 --out runs/gpu/all_lite0s0
cxrviewer-train fit "${RECIPE[@]}" --epochs 5 --folds 1 --seed 1 --max-train kermany=1000 --workers 0 --out runs/cpu/all_lite0s1
cxrviewer-train bundle --cv runs/gpu/cv_lite0s0 --cv runs/gpu/cv_lite0s1 --run runs/gpu/all_lite0s0 \
  --run runs/cpu/all_lite0s1 --out models/cxr-lite0os16x2-256.json \
  --name cxr-lite0os16x2-256-imagenet-box-nih-kermany --readme models/README.md \
  --reproduce "$(cat models/reproduce.sh)" --selection "$(cat models/selection.md)"
