"""Figure experiments: each aggregates finished training runs into data, a summary and a figure."""

from . import seesaw_cbs

EXPERIMENTS = (seesaw_cbs.EXPERIMENT,)
