"""The machine learning, without MLflow or Hydra: data, the pipeline, evaluation on CV folds,
a child's plots, and the paired fold-score statistics."""
