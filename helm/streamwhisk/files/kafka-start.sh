#!/bin/sh
# KRaft node of the Kafka StatefulSet: every pod is broker+controller; node.id = the pod's ordinal.
# Env from the chart: REPLICAS HEADLESS NAMESPACE CLUSTER_ID REPLICATION MIN_ISR KAFKA_HEAP_OPTS.
set -eu
ORD=${HOSTNAME##*-}
DOMAIN="$HEADLESS.$NAMESPACE.svc"
VOTERS=""
i=0
while [ "$i" -lt "$REPLICAS" ]; do
  VOTERS="$VOTERS${VOTERS:+,}$i@${HOSTNAME%-*}-$i.$DOMAIN:9093"
  i=$((i + 1))
done
CONF=/tmp/server.properties
cat > "$CONF" <<PROPS
process.roles=broker,controller
node.id=$ORD
controller.quorum.voters=$VOTERS
listeners=PLAINTEXT://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093
advertised.listeners=PLAINTEXT://$HOSTNAME.$DOMAIN:9092
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=/var/lib/kafka/data
num.partitions=1
auto.create.topics.enable=false
default.replication.factor=$REPLICATION
min.insync.replicas=$MIN_ISR
offsets.topic.replication.factor=$REPLICATION
transaction.state.log.replication.factor=$REPLICATION
transaction.state.log.min.isr=$MIN_ISR
group.initial.rebalance.delay.ms=0
message.max.bytes=67108864
replica.fetch.max.bytes=67108864
# the event log is the source of truth: keep everything unless a topic says otherwise
log.retention.hours=-1
PROPS
LOG4J="-Dlog4j.configuration=file:/etc/streamwhisk/log4j.properties"
CP="$KAFKA_LIBS/*"
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
  java $LOG4J -cp "$CP" kafka.tools.StorageTool format -t "$CLUSTER_ID" -c "$CONF" --ignore-formatted
fi
exec java $KAFKA_HEAP_OPTS -XX:+UseG1GC -Djava.awt.headless=true $LOG4J -cp "$CP" kafka.Kafka "$CONF"
