"""`hydra/launcher=sweeps_joblib`: hydra-joblib-launcher's launcher, each worker set up once."""
