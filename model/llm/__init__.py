"""The LLM side: from a question and a database to checked SQL. One subpackage a job.

    protocol.py   the seam: `TextEngine` (what the pipeline and the app ask of an engine),
                  `GenerationStats`, `Sampled`; imports nothing heavy
    weights/      where a model's weights come from and how this machine computes: the registry
                  of models, the offline GGUF base, dtype and CPU kernel choice, progress lines
    decoding/     a loaded model turned into text: the in-process `Engine` (greedy, beam search
                  and batched sampling, static cache, drafts, the answer vocabulary, the
                  read-back under the base model) and `loading`, which builds one
    server/       the same seam over an OpenAI-compatible server (`--endpoint`) and its wire format
    prompting/    what the model is shown: the one prompt format, the tables chosen for a question,
                  the values it names found in the data
    sql/          SQL without a model and without torch: parsing, the checks (names, values,
                  grouping), the mends (names corrected, joins along keys, keys read as names),
                  extraction of the SQL from the model's text
    pipeline/     one question's way through the rest: `ask` (the entry), its settings, the time
                  budget, the candidates' runs and the choice among them, the `Answer`
    open.py       one way to open an engine from command-line choices (in-process or served)

Dependencies point down: pipeline -> sql -> prompting; decoding and server -> weights; every
one of them may use protocol. The pipeline never imports an engine's module (pyproject's
import contracts). docs/architecture.md follows a question through these and defines the words.
"""
