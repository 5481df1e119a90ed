"""Helpers shared by the tests.

- `journals`: a journal's records and views of them (kinds, task calls, events), and a crash
  simulated by cutting the journal after a record.
- `processes`: waiting for a condition, and killing a `flux` subprocess with SIGKILL once it holds.
- `projects`: a project directory for `flux` subprocesses (flows.py, its store, its run log).
- `flows`: the source of the workflow files those subprocesses run.
"""
