"""fleetbench controller side: parameters, result parsing, reports (no torch here)."""
