# NeuroGrade on CPU by default. For CUDA, pass a CUDA runtime base with Python 3.11, e.g.
#   docker build --build-arg BASE=nvidia/cuda:12.8.0-runtime-ubuntu24.04 .
# (torch's pip wheels bundle the CUDA libraries; the base only needs the driver stack.)
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}
# CPU wheels of torch by default (a few hundred MB instead of the CUDA build); for a GPU image pass
#   --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    NEUROGRADE_HOME=/data \
    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=268435456

WORKDIR /app
COPY requirements.txt .
RUN python3 -m pip install --extra-index-url ${TORCH_INDEX} -r requirements.txt
COPY . .

RUN useradd --create-home neurograde && mkdir -p /data && chown neurograde /data
USER neurograde
VOLUME /data
EXPOSE 8501
HEALTHCHECK CMD python3 -c "import urllib.request; urllib.request.urlopen('http://localhost:8501/_stcore/health')"
CMD ["python3", "-m", "streamlit", "run", "app.py", "--server.address=0.0.0.0", "--server.port=8501"]
