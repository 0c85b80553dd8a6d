"""Sub-commands of `postfordeler`, one module per area."""
