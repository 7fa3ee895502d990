"""One file per schema change, applied in order (``down_revision`` links them)."""
