#!/usr/bin/env bash
# Print a fresh env file for `docker-compose --env-file deploy/.env up`: every secret the
# compose stack requires, random and URL-safe (hex), plus the optional knobs commented.
#   deploy/make-env.sh > deploy/.env && chmod 600 deploy/.env
# Keep ENROLMENT_PSEUDONYM_KEY once data exists: changing it changes every pseudonym.
set -euo pipefail

secret() {
  if command -v openssl >/dev/null 2>&1; then
    openssl rand -hex "$1"
  else
    python3 -c "import secrets, sys; print(secrets.token_hex(int(sys.argv[1])))" "$1"
  fi
}

cat <<ENV
# Common Ground docker-compose secrets (generated $(date -u +%Y-%m-%dT%H:%M:%SZ)). Do not commit.
ENROLMENT_PSEUDONYM_KEY=$(secret 32)
ENROLMENT_DATA_KEY_ENCRYPTION_KEYS=k1:$(secret 32)
COMMONGROUND_LEARNER_KEY_WRAPPING_KEYS=w1:$(secret 32)
MONGO_ROOT_PASSWORD=$(secret 24)
ENROLMENT_MONGO_PASSWORD=$(secret 24)
MATCHING_MONGO_PASSWORD=$(secret 24)
REPORTING_MONGO_PASSWORD=$(secret 24)
GRAFANA_ADMIN_PASSWORD=$(secret 16)

# Optional (defaults shown):
# COMMONGROUND_PUBLISH_ADDRESS=127.0.0.1   # host address the ports are published on
# COMMONGROUND_IMAGE=commonground:local
# COMMONGROUND_LOG_LEVEL=INFO
# TOPIC_PARTITIONS=6
# KAFKA_HEAP_OPTS=-Xms512m -Xmx512m
# PROMETHEUS_RETENTION=15d
# GRAFANA_ADMIN_USER=admin
ENV
