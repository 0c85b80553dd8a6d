"""The quick-start demo: a small municipality and a generated mailbox."""
