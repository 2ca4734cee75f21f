# One image for every production role; the command picks the role:
#   webserver    dagster-webserver -h 0.0.0.0 -p 3000 -w workspace.yaml
#   daemon       dagster-daemon run -w workspace.yaml
#   code server  dagster code-server start -h 0.0.0.0 -p 4000 -m etl_assets.definitions --location-name etl_assets
#   migrations   etl migrate
#   collector    etl collector --host 0.0.0.0
# Configuration comes from the environment (see the README): DATABASE_URL, DAGSTER_PG_URL, AWS_*.

FROM python:3.11-slim-bookworm AS build
RUN pip install --no-cache-dir uv==0.13.8
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
# Dependencies first, from the lock file only, so this layer is reused until uv.lock changes.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY etl_assets ./etl_assets
COPY migrations ./migrations
COPY alembic.ini workspace.yaml dagster.yaml ./
RUN uv sync --frozen --no-dev

FROM python:3.11-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 etl && useradd --system --uid 10001 --gid etl --create-home etl
WORKDIR /app
COPY --from=build --chown=etl:etl /app /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DAGSTER_HOME=/app/dagster_home
RUN mkdir -p "$DAGSTER_HOME" && cp /app/dagster.yaml "$DAGSTER_HOME/" && chown -R etl:etl "$DAGSTER_HOME"
USER etl
EXPOSE 3000 4000 9200
CMD ["dagster-webserver", "-h", "0.0.0.0", "-p", "3000", "-w", "workspace.yaml"]
