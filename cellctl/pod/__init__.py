"""Probability of detection (POD) of the inspection, per MIL-HDBK-1823A: the hit/miss fit
(`fit`) and its figure (`plot`). The experiment that feeds it is `cellctl pod` (sim/pod.py)."""

from cellctl.pod.fit import BOUND, Demonstration, PodFit, binomial_upper, fit_pod

__all__ = ["BOUND", "Demonstration", "PodFit", "binomial_upper", "fit_pod"]
