"""One module per figure; each exposes ``Config``, ``run(cfg, out)`` and ``plot(data, out_prefix)``."""

from fulcrum_core import Experiment

from . import sgd_bias_variance

EXPERIMENTS = (
    Experiment(
        name="sgd_bias_variance",
        description="2506.15535: exact bias/variance of constant-stepsize SGD vs N, last iterate and tail average",
        config_cls=sgd_bias_variance.Config,
        run=sgd_bias_variance.run,
        plot=sgd_bias_variance.plot,
        outputs=sgd_bias_variance.OUTPUTS,
    ),
)
