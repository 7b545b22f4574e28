#!/usr/bin/env bash
# Entrypoint of the mongodb container: MongoDB 7 as a single-node replica set with access
# control. A replica set with authorisation needs a key file for internal authentication;
# one is generated on first start and kept in the mongodb-config volume. The image's own
# entrypoint then creates the root user on first start (it starts a temporary server
# without --replSet/--keyFile for that) and runs mongod. rs.initiate is done by the
# mongodb-init container (deploy/mongodb/init-replica-set.js).
set -euo pipefail

keyfile=/data/configdb/replica-set.key
if [[ ! -s "$keyfile" ]]; then
  # 756 base64-alphabet characters, the size MongoDB's docs suggest.
  (set +o pipefail; tr -dc 'A-Za-z0-9' </dev/urandom | head -c 756 >"$keyfile")
fi
chmod 400 "$keyfile"
chown mongodb:mongodb "$keyfile"

exec docker-entrypoint.sh mongod \
  --replSet "${MONGO_REPLICA_SET:-rs0}" \
  --bind_ip_all \
  --keyFile "$keyfile" \
  "$@"
