"""What a sweep concluded: its children ranked, the verdict on paired folds, model families,
the summary files and plots, and the registry gate."""
