#!/bin/bash
# Creates cdsflow's topics on the compose Kafka (idempotent: --if-not-exists). The Helm chart's
# topic-creation Job creates the same list (charts/cdsflow/values.yaml, kafka.topics).
set -euo pipefail
bootstrap="${KAFKA_BOOTSTRAP:-kafka:9092}"
partitions="${CDSFLOW_PARTITIONS:-6}"
topics=(
  cdsflow.clinical-events.v1 cdsflow.clinical-events.v1.dlq
  cdsflow.recommendations.v1 cdsflow.recommendations.v1.dlq
  cdsflow.feedback.v1 cdsflow.feedback.v1.dlq
)
for topic in "${topics[@]}"; do
  /opt/kafka/bin/kafka-topics.sh --bootstrap-server "$bootstrap" --create --if-not-exists \
    --topic "$topic" --partitions "$partitions" --replication-factor 1
done
# the reasoner's patient context changelog: compacted, partitioned like the events it follows
/opt/kafka/bin/kafka-topics.sh --bootstrap-server "$bootstrap" --create --if-not-exists \
  --topic cdsflow-reasoner.patient-context.v1 --partitions "$partitions" --replication-factor 1 \
  --config cleanup.policy=compact
# the writeback's hook token claims: each replica reads back only the tokens' lifetime (+ skew)
/opt/kafka/bin/kafka-topics.sh --bootstrap-server "$bootstrap" --create --if-not-exists \
  --topic cdsflow.hook-token-claims.v1 --partitions "$partitions" --replication-factor 1 \
  --config retention.ms=3600000
