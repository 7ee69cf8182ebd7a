#!/usr/bin/env bash
# Builds llama.cpp's own llama-server and llama-bench (the peers the tests and benchmarks
# compare against, and the server the remote-engine tests drive) from the llama.cpp sources
# vendored in the pinned llama-cpp-python sdist, so both run exactly the llama.cpp Verso runs.
# Usage: build_llama_server.sh PYTHON DEST   (DEST/build/bin/llama-server when done)
# About 5 minutes on 2 cores; the Makefile runs it once per virtualenv.
set -euo pipefail
py=$1
dest=$2
version=$("$py" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')
mkdir -p "$dest"
cd "$dest"
if [ ! -d "llama_cpp_python-$version" ]; then
  "$py" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$version" -d sdist
  tar xzf "sdist/llama_cpp_python-$version.tar.gz"
  rm -rf sdist
fi
src="$PWD/llama_cpp_python-$version/vendor/llama.cpp"
# No network at build time (no curl, no prebuilt web UI), no OpenSSL; CMAKE_ARGS carries the
# Makefile's compiler flags (AMX left out on x86-64).
# CMAKE_ARGS is a shell-quoted string (as pip's builds read it): split it the shell's way.
eval "extra=(${CMAKE_ARGS:-})"
cmake -S "$src" -B build -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  "${extra[@]}" > configure.log
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target llama-server llama-bench > build.log
build/bin/llama-server --version
