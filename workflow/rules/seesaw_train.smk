# seesaw_train: its experiments and fig_* rules land with the seesaw_train issue. Each experiment
# follows optim_theory.smk: a run_<exp> rule (python -m seesaw_train run ...), a fig_<exp> rule, and
# entries appended to FIGURES and SUMMARIES.
