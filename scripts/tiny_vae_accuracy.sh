#!/usr/bin/env bash
# Accuracy and latency cost of the distilled tiny VAE with a teacher that predicts depth (docs/tiny_vae.md,
# "Accuracy cost"): train the tiny DepthFM of docs/training.md "CPU recipe", distil two tiny VAEs from it
# (--arch tiny: 0.07 M parameters; --arch taesd: 2.4 M), evaluate full vs tiny VAE on the 16 held-out scenes
# (seed 1000) with the log-space protocol, then time the engine on one CPU thread. The teacher is the FIRST CPU recipe
# (64 scenes, 150 steps), kept here so docs/tiny_vae.md's numbers reproduce; training.md's recipe is now stronger.
#
#     scripts/tiny_vae_accuracy.sh [OUT]     # OUT defaults to /tmp/tvae; ~10 min on 2 CPU cores
set -euo pipefail
OUT=${1:-/tmp/tvae}
TEACHER=$OUT/runs/tiny/export/diffusers
export OMP_NUM_THREADS=2

# 1. the teacher: the first CPU recipe of docs/training.md (scenes of seed 0)
depthfm-train --init tiny --synthetic 64 --size 64 64 --vae-warmup-steps 60 --vae-warmup-batch-size 4 \
  --max-steps 150 --batch-size 8 --lr 1e-3 --ema-decay 0.99 --cache-latents --output "$OUT/runs/tiny" --no-resume --quiet

# 2. distil on the same 64 training scenes at 64x64; teacher targets from k = 2 (the default --num-steps)
depthfm-distill-vae --checkpoint "$TEACHER" --synthetic 64 --arch tiny --resolution 64 --batch-size 8 \
  --max-steps 2000 --learning-rate 1e-3 --device cpu --output "$OUT/distill_tiny" --no-resume --no-progress
depthfm-distill-vae --checkpoint "$TEACHER" --synthetic 64 --arch taesd --resolution 64 --batch-size 8 \
  --max-steps 500 --learning-rate 1e-3 --device cpu --output "$OUT/distill_taesd" --no-resume --no-progress

# 3. full vs tiny VAE on the held-out scenes (seed 1000), M = 1, least squares in log space
EVAL=(--synthetic 16 --synthetic-seed 1000 --processing-resolution 64 --nfe 1 2 --quiet)
depthfm-eval --checkpoint "$TEACHER" --vae-kind full "${EVAL[@]}" --json "$OUT/eval_full.json"
for arch in tiny taesd; do
  depthfm-eval --checkpoint "$TEACHER" --tiny-vae "$OUT/distill_$arch/tiny_vae" "${EVAL[@]}" --json "$OUT/eval_$arch.json"
done
# same numbers through distill.evaluate_vae_kinds (same scenes and noise for both paths), plus how far z moves
python3 - "$TEACHER" "$OUT/distill_tiny/tiny_vae" "$OUT/distill_taesd/tiny_vae" <<'EOF'
import json, sys
import numpy as np, torch
from depthfm_ros.training.distill import evaluate_vae_kinds
from depthfm_ros.models.depthfm import DepthFM
from depthfm_ros.processing import to_model_input
from depthfm_ros.models.tiny_vae import load_tiny_vae
from depthfm_ros.training.data import SyntheticDepthDataset

model = DepthFM.load(sys.argv[1]).eval()
pairs = [SyntheticDepthDataset(16, 64, 64, seed=1000).pair(i) for i in range(16)]
rgb = torch.from_numpy(np.stack([to_model_input(rgb, 64, 64) for rgb, _, _ in pairs]))
depth_m = np.stack([d for _, d, _ in pairs])
for folder in sys.argv[2:]:
    tiny = load_tiny_vae(folder).eval()
    for k in (1, 2):
        m = evaluate_vae_kinds(model, tiny, rgb, depth_m, num_steps=k)
        print(folder, f"k={k}", json.dumps({key: round(v, 4) for key, v in m.items()}))
EOF

# 4. engine latency, one thread, 64x64 (the evaluated size) and 256x256, k = 1 and 2, M = 1
for hw in 64 256; do
  for k in 1 2; do
    for vae in "--vae-kind full" "--tiny-vae $OUT/distill_tiny/tiny_vae" "--tiny-vae $OUT/distill_taesd/tiny_vae"; do
      echo "== ${hw}x${hw} k=$k $vae"
      OMP_NUM_THREADS=1 depthfm-bench --checkpoint "$TEACHER" $vae --height $hw --width $hw --input-size ${hw}x${hw} \
        --num-steps $k --repeats 30 --no-onnx --no-flops --out "$OUT/bench" | grep 'torch\['
    done
  done
done
