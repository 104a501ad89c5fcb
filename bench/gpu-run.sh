#!/usr/bin/env bash
# The GPU check on a lent machine that has no Node.js: unpacks the bundle `npm run bench -- --gpu-bundle DIR` wrote
# (Node.js, onnxruntime-node, the Vulkan loader packages Dawn needs), runs bench/gpu-check.mjs on every ONNX Runtime
# provider that opens and PyTorch on CUDA, and writes OUT/gpu-check.json for `npm run bench -- --gpu-report`.
#   bash bench/gpu-run.sh DIR [OUT]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bundle=$(cd "${1:?usage: bench/gpu-run.sh BUNDLE_DIR [OUT_DIR]}" && pwd)
out=${2:-$bundle}
mkdir -p "$out"
for deb in "$bundle"/debs/*.deb; do dpkg -x "$deb" /; done
ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; fi
egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
if [ -f "$egl" ]; then export __EGL_VENDOR_LIBRARY_FILENAMES="$egl"; fi
work=$(mktemp -d)
xz -dc "$bundle/node.xz" > "$work/node"
chmod +x "$work/node"
lib="$bundle/node_modules/onnxruntime-node/bin/napi-v6/linux/x64"
if [ ! -f "$lib/libonnxruntime.so.1" ]; then xz -dk "$lib/libonnxruntime.so.1.xz"; fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu-machine.txt" 2>&1 || echo "nvidia-smi unavailable" > "$out/gpu-machine.txt"
"$work/node" "$here/gpu-check.mjs" "$bundle/graphs" --ort "$bundle/node_modules/onnxruntime-node" --torch python3 --device cuda > "$out/gpu-check.json"
echo "wrote $out/gpu-check.json ($(cat "$out/gpu-machine.txt"))"
