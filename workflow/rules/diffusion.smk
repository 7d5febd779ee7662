# diffusion: its experiments and fig_* rules land with the diffusion issue. Each experiment
# follows optim_theory.smk: a run_<exp> rule (python -m diffusion run ...), a fig_<exp> rule, and
# entries appended to FIGURES and SUMMARIES.
