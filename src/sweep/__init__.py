"""The sweep: Hydra's hooks, the parent run, each job's run, the failure policy, the checks
before any run, resume and what an interrupt leaves: between a multirun and the runs it makes."""
