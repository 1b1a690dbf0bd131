"""CloudEvents, publishers, brokers (in-memory, NATS JetStream) and the dispatcher. Imports no other engine."""
