"""What the model is shown: `prompt` (the one prompt format, for inference and training
alike), `context` (which tables a question gets), `values` (values the question names, found
in the data)."""
