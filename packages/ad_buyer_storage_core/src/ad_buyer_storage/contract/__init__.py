"""What a backend implements: the protocol, the glob grammar patterns arrive in, clocks."""
