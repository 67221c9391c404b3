"""What goes out: the record sink protocol and its implementations."""
