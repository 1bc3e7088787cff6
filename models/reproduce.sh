#!/usr/bin/env bash
# Reproduce the bundled model from the shared data (run from the repository root, venv with ".[train]" active).
# 1. pack the training set (the app's own preprocessing, 256 px, JPEG so that it travels to a GPU machine):
#    q72 with 1,400 Kermany films (first GPU session), q60 with 1,000 (second session, where two packs had to
#    fit the machine's 64 MiB beside the code), and the thorax-crop variant that was compared and not shipped.
# 2. on a GPU: patient-level 3-fold cross-validation + all-data fits (models/search/gpu_search.py runs them as
#    parallel processes and writes each fold's held-out predictions and maps; each command also runs on its own).
# 3. the bundle: the three all-data networks joined into one; calibration, operating points, metrics and the
#    pointing game from the out-of-fold predictions and maps of the three cross-validation runs.
set -euo pipefail
D=${CXR_SHARED_DATA:-../shared/data}
SRC=(--dataset "nih,csv=$D/nih/Data_Entry_2017_subset.csv,images=$D/nih/images"
     --dataset "plain,csv=$D/kermany/labels.csv,root=$D,mapping=$D/label_map_to_chexpert.csv,name=kermany"
     --bbox "$D/nih/bbox.csv" --bbox-root "$D" --input-size 256 --cache-dir cache)
cxrviewer-train pack "${SRC[@]}" --quality 72 --max-images kermany=1400 --out runs/data256.npz
cxrviewer-train pack "${SRC[@]}" --quality 60 --max-images kermany=1000 --out runs/p_none.npz
cxrviewer-train pack "${SRC[@]}" --quality 60 --max-images kermany=1000 --crop thorax --out runs/p_thorax.npz
LABELS="No Finding,Cardiomegaly,Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other"
RECIPE=(--arch efficientnet_lite0_os16 --init imagenet --input-size 256 --batch-size 32 --lr 5e-4 --patience 6
        --labels "$LABELS" --box-supervision --box-loss cells --box-weight 0.3 --quiet)
CV=(cv "${RECIPE[@]}" --folds 3 --max-train kermany=1000)
cxrviewer-train "${CV[@]}" --packed runs/data256.npz --epochs 20 --seed 0 --out runs/gpu/cv_lite0
cxrviewer-train "${CV[@]}" --packed runs/data256.npz --epochs 20 --seed 1 --out runs/gpu/cv_lite0s1
cxrviewer-train "${CV[@]}" --packed runs/p_none.npz --epochs 14 --seed 2 --out runs/gpu2/cv_lite0_s2
cxrviewer-train "${CV[@]}" --packed runs/p_thorax.npz --epochs 14 --seed 0 --out runs/gpu2/cv_thorax_s0  # compared
cxrviewer-train fit "${RECIPE[@]}" --packed runs/data256.npz --epochs 20 --folds 1 --seed 0 --out runs/gpu/all_lite0
cxrviewer-train fit "${RECIPE[@]}" --packed runs/p_none.npz --epochs 12 --folds 1 --seed 1 --out runs/gpu2/all_lite0_s1
cxrviewer-train fit "${RECIPE[@]}" --packed runs/p_none.npz --epochs 12 --folds 1 --seed 2 --out runs/gpu2/all_lite0_s2
# held-out predictions and maps of every fold (gpu_search.py does this on the GPU):
#   python -c "from pathlib import Path; from cxrviewer.train.heldout import write_heldout; write_heldout(Path(RUN), Path(PACK))"
cxrviewer-train bundle --cv runs/gpu/cv_lite0 --cv runs/gpu/cv_lite0s1 --cv runs/gpu2/cv_lite0_s2 \
  --run runs/gpu/all_lite0 --run runs/gpu2/all_lite0_s1 --run runs/gpu2/all_lite0_s2 \
  --out models/cxr-lite0os16x3-256.json --name cxr-lite0os16x3-256-imagenet-box-nih-kermany \
  --readme models/README.md --reproduce "$(cat models/reproduce.sh)" --selection "$(cat models/selection.md)"
# 4. the abroad check's reference (detail spectrum and thin lines of decoded training films, not the JPEG packs),
#    stored in the card's gate record and re-sealed; it is also measured on the site-shift battery's films:
python -m cxrviewer.train.shift.abroad --model models/cxr-lite0os16x3-256.json --data "$D" --dicom --write-card \
  --out runs/abroad
# 5. the ONNX export the app runs (checked against torch on the demo films; the card re-sealed with its SHA-256):
cxrviewer-train export-onnx --model models/cxr-lite0os16x3-256.json --readme models/README.md
# 6. input harmonisation (cxrviewer/model/harmonise.py), chosen on the site-shift battery (radius 6 / 2 / 1, line
#    strength 1 / 0.5 compared on seed 0, checked on seed 1; models/README.md) and stored in the card's
#    preprocessing (re-sealed; the weights and the ONNX file do not change):
python -m cxrviewer.train.shift.battery --model models/cxr-lite0os16x3-256.json --data "$D" --nih 300 --kermany 160 \
  --dicom --shift all --harmonise-radius 2 --harmonise-lines 0.5 --write-card --out runs/harmonised
