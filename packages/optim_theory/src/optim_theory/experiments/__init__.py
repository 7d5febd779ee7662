"""One module per figure; each defines ``Config``, ``run(cfg, out)``, ``plot(data, out_prefix)`` and
``EXPERIMENT`` (its registry entry)."""

from . import sgd_bias_variance

EXPERIMENTS = (sgd_bias_variance.EXPERIMENT,)
