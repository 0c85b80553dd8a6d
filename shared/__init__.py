"""Code shared by every Postfordeler service: settings, contracts, the bus, persistence.

Services import only from here, never from each other.
"""
