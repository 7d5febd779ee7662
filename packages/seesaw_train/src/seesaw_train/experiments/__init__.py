"""Figure experiments: each aggregates finished training runs into data, a summary and a figure."""

from . import seesaw_cbs, seesaw_vs_cosine

EXPERIMENTS = (seesaw_cbs.EXPERIMENT, seesaw_vs_cosine.EXPERIMENT)
