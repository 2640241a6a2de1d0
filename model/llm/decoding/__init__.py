"""A loaded model turned into text: `engine.Engine` streams greedy answers, `search` draws beams
and batched samples over the same caches, `static` decodes over a CUDA-graph static cache,
`attention` and `drafts` speed up CPU steps, `vocab` restricts answers to the tokens SQL uses,
`unadapted` reads the question back under the base model, and `loading` builds an Engine."""
