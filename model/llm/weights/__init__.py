"""Where a model's weights come from and how this machine computes: the registry of models and
adapters (`registry`), the offline Gemma 3 270M from its GGUF package (`gguf_base`), the compute
dtype (`dtype`), CPU threads and kernels (`cpu`), and what loading prints (`progress`)."""
