"""Linear-regression theory: spectra, exact SGD risk recursions, classical risk bounds."""
