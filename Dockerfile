# rag-search: the `rag` CLI and the Streamlit search page (see compose.yaml).
#
#   docker build -t rag-search:local .                  # CPU torch (small image)
#   docker build -t rag-search:gpu \
#     --build-arg TORCH_INDEX_URL=https://pypi.org/simple .   # PyPI's torch: the CUDA build
#   (or https://download.pytorch.org/whl/cuXXX for the CUDA version your driver supports);
#   run a GPU image with `docker run --gpus all` (compose: `gpus: all`) and RAG_DEVICE=cuda.
# torch stays pinned to pyproject.toml's torch==2.13.0 whatever the index.
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/cache/huggingface \
    RAG_DATA_DIR=/data

# torch first, from the chosen index; `pip install .` then finds torch==2.13.0 satisfied.
RUN pip install torch==2.13.0 --index-url ${TORCH_INDEX_URL}

WORKDIR /src
COPY pyproject.toml README.md ./
COPY embedder ./embedder
COPY indexer ./indexer
COPY app ./app
COPY finetune ./finetune
RUN pip install ".[scale]" && cd / && rm -rf /src

RUN useradd --create-home --uid 10001 rag \
    && mkdir -p /cache/huggingface /data \
    && chown -R rag:rag /cache /data
USER rag
WORKDIR /home/rag

EXPOSE 8501 8800
ENTRYPOINT ["rag"]
CMD ["ui", "--host", "0.0.0.0", "--port", "8501"]
