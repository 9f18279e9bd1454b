#!/usr/bin/env bash
# Build llama.cpp's llama-server from the vendor/llama.cpp tree of the same llama-cpp-python
# sdist the project pins, so the benchmark compares the same kernels. Prints the binary's path.
#
# Nothing here is tied to one machine: the build is cached in
#   $LLAMA_SERVER_CACHE, else ${XDG_CACHE_HOME:-$HOME/.cache}/confidential-gateway/llama-server-VERSION
# VERSION is $LLAMA_CPP_PYTHON_VERSION (bench/stack.py passes the installed one), and the sdist
# is fetched with $PYTHON (default python3). Run it from anywhere.
set -euo pipefail
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
PYTHON="${PYTHON:-python3}"
CACHE="${LLAMA_SERVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/confidential-gateway/llama-server-$VERSION}"
BIN="$CACHE/build/bin/llama-server"
if [[ -x "$BIN" ]]; then
  echo "$BIN"
  exit 0
fi
mkdir -p "$CACHE"
SDIST_DIR="$CACHE/sdist"
if [[ ! -d "$SDIST_DIR/llama_cpp_python-$VERSION" ]]; then
  "$PYTHON" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$SDIST_DIR" >&2
  tar -xzf "$SDIST_DIR/llama_cpp_python-$VERSION.tar.gz" -C "$SDIST_DIR"
fi
SRC="$SDIST_DIR/llama_cpp_python-$VERSION/vendor/llama.cpp"
# Same flags as the project's llama-cpp-python build (see Makefile): ggml's AMX kernels crash
# on Sapphire Rapids VMs (llama.cpp #20824), so x86_64 builds compile them out; the rest is native.
FLAGS=""
if [[ "$(uname -m)" == "x86_64" ]]; then FLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"; fi
CFLAGS="$FLAGS" CXXFLAGS="$FLAGS" cmake -S "$SRC" -B "$CACHE/build" -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DBUILD_SHARED_LIBS=OFF >&2
cmake --build "$CACHE/build" --target llama-server -j "$(nproc)" >&2
echo "$BIN"
