#!/usr/bin/env bash
# Downloads Meta's official SAM 2 / SAM 2.1 checkpoints into this folder.
#
#   bash checkpoints/download_ckpts.sh                 # all SAM 2.1 sizes (tiny, small, base_plus, large)
#   bash checkpoints/download_ckpts.sh sam2.1 tiny     # one file
#   bash checkpoints/download_ckpts.sh sam2 all        # the original SAM 2 release
#   DRY_RUN=1 bash checkpoints/download_ckpts.sh ...   # print the URLs only
#
# Then: build_sam2("sam2.1_hiera_t.yaml", "checkpoints/sam2.1_hiera_tiny.pt"), or pass the path
# to --sam2. The same files are on the Hugging Face hub as facebook/sam2.1-hiera-<size>.
set -euo pipefail
cd "$(dirname "$0")"

release="${1:-sam2.1}"
size="${2:-all}"
case "$release" in
  sam2) base_url="https://dl.fbaipublicfiles.com/segment_anything_2/072824" ;;
  sam2.1) base_url="https://dl.fbaipublicfiles.com/segment_anything_2/092824" ;;
  *) echo "unknown release '$release' (sam2 or sam2.1)" >&2; exit 2 ;;
esac
case "$size" in
  all) sizes=(tiny small base_plus large) ;;
  tiny|small|base_plus|large) sizes=("$size") ;;
  *) echo "unknown size '$size' (tiny, small, base_plus, large or all)" >&2; exit 2 ;;
esac

for s in "${sizes[@]}"; do
  file="${release}_hiera_${s}.pt"
  url="${base_url}/${file}"
  if [ -n "${DRY_RUN:-}" ]; then
    echo "$url"
    continue
  fi
  echo "Downloading ${file} ..."
  if command -v wget >/dev/null 2>&1; then
    wget -q --show-progress -c -O "${file}.part" "$url"
  else
    curl -fL -C - -o "${file}.part" "$url"
  fi
  mv "${file}.part" "$file"  # only a complete download gets the real name
done
