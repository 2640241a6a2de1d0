"""The LLM side: from a question and a database to checked SQL. One subpackage a job.

    protocol.py   the seam: `TextEngine` (what the pipeline and the app ask of an engine),
                  `GenerationStats`, `Sampled`; imports nothing heavy
    weights/      where a model's weights come from and how this machine computes: the registry
                  of models, the offline GGUF base, dtype and CPU kernel choice, progress lines
    decoding/     a loaded model turned into text: the in-process `Engine` (greedy, beam search
                  and batched sampling, static cache, drafts, the answer vocabulary, the
                  read-back under the base model) and `loading`, which builds one
    server/       the same seam over an OpenAI-compatible server (`--endpoint`): its address,
                  the client engine, the wire format
    prompting/    what the model is shown: the one prompt format, the tables chosen for a question,
                  the values it names found in the data
    sql/          SQL without a model and without torch: parsing, the checks (names, values,
                  grouping), the mends (names corrected, joins along keys, keys read as names),
                  extraction of the SQL from the model's text, the SQL read out in plain words
    pipeline/     one question's way through the rest: `ask` (the entry), its settings, the time
                  budget and draw plan, the candidates' runs and the choice among them, the
                  `Answer` and how sure it is
    open.py       one way to open an engine from command-line choices (in-process or served)
    adapter_files.py  the files an adapter folder holds, named once

Dependencies point down: pipeline -> sql -> prompting; decoding and server -> weights; every
one of them may use protocol. The pipeline never imports an engine's module (pyproject's
import contracts). docs/architecture.md follows a question through these and defines the words.
"""
