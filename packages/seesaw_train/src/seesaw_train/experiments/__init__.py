"""Figure experiments: each aggregates finished training runs into data, a summary and a figure."""

from . import seesaw_alpha_beta, seesaw_cbs, seesaw_large_batch, seesaw_vs_cosine

EXPERIMENTS = (
    seesaw_cbs.EXPERIMENT,
    seesaw_vs_cosine.EXPERIMENT,
    seesaw_alpha_beta.EXPERIMENT,
    seesaw_large_batch.EXPERIMENT,
)
