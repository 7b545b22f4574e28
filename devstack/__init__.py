"""The local stack: embedded Kafka-protocol broker and MongoDB-protocol server, plus the
three services as child processes. Used by ``./commonground up`` and by the test fixtures."""
