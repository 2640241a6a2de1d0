"""One question's way from text to checked SQL: `ask` (the entry the app, `ask` and `eval` share),
`question_run` (the steps of one question), `vote` (the candidates' bounded runs and the choice),
`budget` (the time a question may take) and `answer` (what is handed back)."""
