"""Figure experiments of 2508.16154: each trains its denoisers, samples, and measures collapse."""

from . import collapse_mitigation, collapse_samplers, seesaw_noise

EXPERIMENTS = (collapse_samplers.EXPERIMENT, seesaw_noise.EXPERIMENT, collapse_mitigation.EXPERIMENT)
