# NeuroGrade on CPU by default:  docker build -t neurograde .
# On a GPU: torch's CUDA wheels bundle the CUDA libraries, so the CUDA build is a wheel-index switch
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 -t neurograde:cuda .
#   docker run --gpus all -p 8501:8501 neurograde:cuda
# BASE can name another image with Python 3.11 and pip (e.g. a CUDA runtime image with Python added).
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}
# where torch comes from: CPU wheels (a few hundred MB) unless told otherwise
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    NEUROGRADE_HOME=/data NEUROGRADE_AUTH=local \
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
# Sign-in is on (NEUROGRADE_AUTH=local): create the first administrator once, into the data volume:
#   docker run -it --rm -v ng:/data neurograde python3 -m core users add admin --role admin
# `core serve` refuses to bind 0.0.0.0 when NEUROGRADE_AUTH=off. Behind TLS: see deploy/.
CMD ["python3", "-m", "core", "serve", "--address=0.0.0.0", "--port=8501", "--", "--server.headless=true"]
