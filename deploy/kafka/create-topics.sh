#!/usr/bin/env bash
# Create Common Ground's Kafka topics: the contract topics of shared/topics.py and a
# dead-letter topic (<topic>.dlq) for each. Idempotent (--if-not-exists), so it runs on
# every `docker-compose up`. Run by the kafka-init container (apache/kafka image).
#
# Environment:
#   BOOTSTRAP_SERVERS          broker to talk to                    (default kafka:9092)
#   TOPIC_PARTITIONS           partitions per topic = the most consumers a group can use
#                                                                  (default 6)
#   TOPIC_REPLICATION_FACTOR   replicas per partition (1 on a single broker)   (default 1)
#   DLQ_RETENTION_MS           how long dead letters are kept for replay (default 30 days)
#   KAFKA_TOPICS               path of kafka-topics.sh   (default /opt/kafka/bin/kafka-topics.sh)
set -euo pipefail

bootstrap="${BOOTSTRAP_SERVERS:-kafka:9092}"
partitions="${TOPIC_PARTITIONS:-6}"
replication="${TOPIC_REPLICATION_FACTOR:-1}"
dlq_retention_ms="${DLQ_RETENTION_MS:-2592000000}"
kafka_topics="${KAFKA_TOPICS:-/opt/kafka/bin/kafka-topics.sh}"

# Keep in step with shared/topics.py (CONTRACT_TOPICS); tests/unit/deploy checks it.
CONTRACT_TOPICS=(
  enrolment.inbound.v1
  enrolment.events.v1
  enrolment.rejected.v1
  matching.volunteers.v1
  matching.matches.v1
)

create() {
  local topic="$1"
  shift
  "$kafka_topics" --bootstrap-server "$bootstrap" --create --if-not-exists \
    --topic "$topic" --partitions "$partitions" --replication-factor "$replication" "$@"
}

for topic in "${CONTRACT_TOPICS[@]}"; do
  create "$topic"
  create "$topic.dlq" --config "retention.ms=$dlq_retention_ms"
done

echo "topics ready on $bootstrap:"
"$kafka_topics" --bootstrap-server "$bootstrap" --list
