"""optim_theory — exact, fast numerical reproductions of optimization-theory results.

``python -m optim_theory list`` shows the experiments; see the package README.
"""

__version__ = "0.1.0"
