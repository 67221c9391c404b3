"""What goes out: formats, transports, pagers, the retry loop and the delivery service."""
