"""Device-agnostic tensor solver core of the Sampler Scheduler pack (no ComfyUI imports)."""
