#!/bin/sh
# Kafka Connect worker (distributed mode) for connector feeds (feeds/connect.py); its state lives in
# <prefix>.connect-* topics. Several replicas form one Connect cluster (group <prefix>-connect).
# Env from the chart: BOOTSTRAP PREFIX REPLICATION KAFKA_HEAP_OPTS POD_IP.
set -eu
CONF=/tmp/connect.properties
cat > "$CONF" <<PROPS
bootstrap.servers=$BOOTSTRAP
group.id=$PREFIX-connect
config.storage.topic=$PREFIX.connect-configs
offset.storage.topic=$PREFIX.connect-offsets
status.storage.topic=$PREFIX.connect-status
config.storage.replication.factor=$REPLICATION
offset.storage.replication.factor=$REPLICATION
status.storage.replication.factor=$REPLICATION
# as cli/services.py start_connect: the feed service reads connector records as strings
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.storage.StringConverter
offset.flush.interval.ms=1000
listeners=http://0.0.0.0:8083
rest.advertised.host.name=$POD_IP
rest.advertised.port=8083
plugin.path=/opt/kafka/plugins
producer.max.request.size=67108864
consumer.max.partition.fetch.bytes=67108864
PROPS
exec java $KAFKA_HEAP_OPTS -XX:+UseG1GC -Djava.awt.headless=true \
  -Dlog4j.configuration=file:/etc/streamwhisk/log4j.properties \
  -cp "$KAFKA_LIBS/*" org.apache.kafka.connect.cli.ConnectDistributed "$CONF"
