"""Figure experiments of the serving package (simulated): each writes data, a summary with claims, a figure."""

from ..validation import sim_validation
from . import serving_ablations, serving_autoscaling, serving_prefix_hotspots, serving_rate_sweep

EXPERIMENTS = (
    serving_rate_sweep.EXPERIMENT,
    serving_prefix_hotspots.EXPERIMENT,
    serving_autoscaling.EXPERIMENT,
    serving_ablations.EXPERIMENT,
    sim_validation.EXPERIMENT,
)
