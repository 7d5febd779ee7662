# serving: its experiments and fig_* rules land with the serving issue. Each experiment
# follows optim_theory.smk: a run_<exp> rule (python -m serving run ...), a fig_<exp> rule, and
# entries appended to FIGURES and SUMMARIES.
