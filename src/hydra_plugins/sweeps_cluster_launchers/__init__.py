"""`hydra/launcher=submitit_local|submitit_slurm|ray` in this app: Hydra's own launchers, waiting
for every job, so a job whose process dies is a failed job and not the end of the sweep."""
