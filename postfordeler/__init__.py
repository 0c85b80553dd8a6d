"""Postfordeler's composition root: the command line and the all-in-one runner.

This is the only package that imports several services; the services themselves import only
`shared`.
"""
