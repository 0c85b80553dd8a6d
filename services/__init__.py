"""Postfordeler's services. Each is importable on its own and imports only `shared`."""
