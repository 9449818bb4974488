"""Agent drivers: one small module per CLI, behind the protocol in :mod:`.base`."""
