"""BFCL v4 (non-live AST categories) on any endpoint, with BFCL's own data and checker."""
