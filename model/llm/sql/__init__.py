"""SQL without a model and without torch: `parsing` (sqlglot, guarded), `extract` (the SQL in
a model's text), the checks (`check` over `names`, `probes`, `grouping`; each reports
`problem.Problem`s) and the mends (`mend`: names corrected, `joins` along foreign keys,
`literals`: keys read as the names they stand for)."""
