"""The drift engine and the shells that run it: replay over files, and (later) live on Kafka."""
