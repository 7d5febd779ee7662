"""One module per figure; each defines ``Config``, ``run(cfg, out)``, ``plot(data, out_prefix)`` and
``EXPERIMENT`` (its registry entry)."""

from . import (
    gd_ridge_sgd,
    logreg_adaptive,
    logreg_large_stepsize,
    multipass_scaling,
    seesaw_linreg,
    sgd_bias_variance,
)

EXPERIMENTS = (
    sgd_bias_variance.EXPERIMENT,
    seesaw_linreg.EXPERIMENT,
    multipass_scaling.EXPERIMENT,
    gd_ridge_sgd.EXPERIMENT,
    logreg_large_stepsize.EXPERIMENT,
    logreg_adaptive.EXPERIMENT,
)
