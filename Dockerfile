# The statestore image used by docker-compose.yml: the CLI (statestore) with the embedded extra,
# and redis-cli for the operator shell.
FROM python:3.11-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-tools \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY statestore ./statestore
RUN pip install --no-cache-dir ".[embedded]" && rm -rf /src
WORKDIR /
CMD ["statestore", "--help"]
