"""Alert fan-out (SPEC §7): sinks, grouping, durable outbox, delivery and the dashboard state."""
