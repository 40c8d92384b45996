"""Sigma schedules: Align Your Steps tables and the KLUB optimiser (no ComfyUI imports)."""
