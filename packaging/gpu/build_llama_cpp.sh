#!/usr/bin/env bash
# Rebuild llama-cpp-python (the version pinned in pyproject.toml) inside a virtual environment
# for one compute backend; `make package` (packaging/build.py) then bundles whatever is there.
#
#   packaging/gpu/build_llama_cpp.sh BACKEND [VENV]          (VENV defaults to .venv)
#
# BACKEND:
#   native     this machine's CPU (what `make install` builds; AMX left out on x86-64)
#   portable   a CPU build for other machines: -DGGML_NATIVE=OFF, which on x86-64 targets
#              AVX2/FMA/F16C/BMI2 (Haswell, 2013, and later); PORTABLE_BASELINE=avx or sse42
#              goes lower. Use this for installers.
#   cuda       NVIDIA GPUs (Linux; on Windows packaging/windows/build.ps1 -Cuda). Needs the
#              CUDA toolkit (nvcc) here; users need only the NVIDIA driver. CUDA_ARCHS picks
#              the GPU generations (default "75;80;86;89;90": Turing to Hopper).
#              GGML_CUDA_NO_VMM=ON keeps libggml-cuda from linking the driver (libcuda.so.1)
#              directly: without it the libraries do not even load on a machine with no
#              NVIDIA driver; with it the CUDA runtime finds no device there and llama.cpp
#              runs on the CPU.
#   metal      Apple GPUs (macOS on Apple silicon; Metal is llama.cpp's default there).
#
# llama-cpp-python 0.3.36 and GGML_BACKEND_DL / GGML_CPU_ALL_VARIANTS: not used here. Its
# CMakeLists installs only a backend target named exactly ggml-cpu into llama_cpp/lib (the
# per-CPU variants ggml-cpu-haswell, ggml-cpu-skylakex… are not installed), and a
# dynamically loaded backend is searched for in the executable's folder, the current folder
# or a compile-time GGML_BACKEND_DIR, never in llama_cpp/lib; with the Python interpreter as
# the executable no backend is found and model loading fails with "no backends are loaded".
#
# pip's cache is bypassed (--no-cache-dir): a GPU or portable wheel must never be cached
# under the same name as the developer's native CPU wheel (and vice versa).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BACKEND=${1:?usage: build_llama_cpp.sh native|portable|cuda|metal [VENV]}
VENV=${2:-$ROOT/.venv}
VERSION=$(sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' "$ROOT/pyproject.toml")
NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"

case "$BACKEND" in
    native)
        if [ "$(uname -m)" = x86_64 ]; then
            ARGS="-DCMAKE_C_FLAGS='$NO_AMX' -DCMAKE_CXX_FLAGS='$NO_AMX'"
        else
            ARGS=""
        fi ;;
    portable)
        ARGS="-DGGML_NATIVE=OFF"
        case "${PORTABLE_BASELINE:-avx2}" in
            avx2) ;;
            avx) ARGS="$ARGS -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF -DGGML_BMI2=OFF" ;;
            sse42) ARGS="$ARGS -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF -DGGML_BMI2=OFF" ;;
            *) echo "PORTABLE_BASELINE must be avx2, avx or sse42" >&2; exit 2 ;;
        esac ;;
    cuda)
        command -v nvcc >/dev/null || { echo "nvcc not found: install the CUDA toolkit" >&2; exit 2; }
        ARGS="-DGGML_CUDA=on -DGGML_CUDA_NO_VMM=ON -DGGML_NATIVE=OFF"
        ARGS="$ARGS -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHS:-75;80;86;89;90}" ;;
    metal)
        [ "$(uname -s)" = Darwin ] || { echo "Metal builds need macOS" >&2; exit 2; }
        ARGS="-DGGML_METAL=on -DGGML_NATIVE=OFF" ;;
    *) echo "unknown backend $BACKEND" >&2; exit 2 ;;
esac

echo "llama-cpp-python $VERSION, CMAKE_ARGS=$ARGS"
CMAKE_ARGS="$ARGS" "$VENV/bin/python" -m pip install --no-cache-dir --force-reinstall \
    --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION"
cd "$ROOT" && "$VENV/bin/verso" --version
