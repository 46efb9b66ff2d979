#!/usr/bin/env bash
# The demo story on the docker-compose stack: builds and starts everything, waits until every
# service is healthy (ready), then plays the story (scripts/compose_demo_story.py).
#   scripts/compose-demo.sh            # Triton on the GPU
#   COMPOSE_PROFILES=cpu scripts/compose-demo.sh   # Triton on the CPU
# Secrets: CDSFLOW_PSEUDONYM_KEY and CDSFLOW_CHANNEL_SECRET from your shell, else random ones
# for this run (cards and keys do not survive a change of the pseudonym key).
set -euo pipefail
cd "$(dirname "$0")/.."
export CDSFLOW_PSEUDONYM_KEY="${CDSFLOW_PSEUDONYM_KEY:-$(python3 -c 'import secrets; print(secrets.token_hex(32))')}"
export CDSFLOW_CHANNEL_SECRET="${CDSFLOW_CHANNEL_SECRET:-$(python3 -c 'import secrets; print(secrets.token_hex(24))')}"
docker compose up -d --build --wait --wait-timeout 600
UV="${UV:-$(command -v uv || echo 'python3 -m uv')}"
$UV run --frozen python scripts/compose_demo_story.py "$@"
echo "Jaeger UI: http://localhost:16686  CDS Hooks discovery: http://localhost:8083/cds-services  HAPI: http://localhost:8080/fhir"
echo "stop with: docker compose down"
