"""The out-of-distribution guard that ships inside the model file.

The student's pooled last feature map of a view like its training views (good surfaces and
indications alike) lies in a region those views fill; a view the model was never trained for
(no part, wrong part, a blank, dark or noisy frame, another scene) lands elsewhere, and the
model's answer for it means nothing. The guard is the Mahalanobis distance of the pooled
features from the mean of the fit views, computed by the ONNX graph itself as an extra output ``ood_score``, with its
threshold and how it was set in the model's metadata. Being in the model file, it is covered
by the profile's sha256 and cannot be lost or paired with the wrong model.

A view is out of distribution when its score is above the threshold, or is not a number; its
score then decides nothing and the part is RECHECK (cellctl.decision). The guard is fitted on
good and defective views: fitted on good views only, it puts every view with an indication far
above its threshold (every view the committed student scores >= 0.5, measured), and no
defective part would ever be rejected.

- :mod:`cellctl.ood.fit`: pooled features -> mean, whitening, threshold (numpy only).
- :mod:`cellctl.ood.graph`: adding, replacing and removing the guard in an ONNX model.
- :mod:`cellctl.ood.calibrate`: the work of `cellctl guard` on folders of images.
"""

from __future__ import annotations

import math

OUTPUT = "ood_score"
FEATURES = "features"  # the model output the guard reads: N x C x H x W, the last feature map

# model metadata (ModelProto.metadata_props), all values are text
META_PREFIX = "cellctl.ood."
THRESHOLD = META_PREFIX + "threshold"  # a view scoring above it is out of distribution
FALSE_ALARM_RATE = META_PREFIX + "false_alarm_rate"  # per view, the target the threshold was set for
FIT_VIEWS = META_PREFIX + "fit_views"  # in-distribution views the mean and covariance come from
HOLDOUT_VIEWS = META_PREFIX + "holdout_views"  # other in-distribution views the threshold was set on
HOLDOUT_FALSE_ALARMS = META_PREFIX + "holdout_false_alarms"  # of those, how many score above it
SHRINKAGE = META_PREFIX + "shrinkage"  # covariance shrinkage towards a scaled identity, in [0, 1]
PROFILES = META_PREFIX + "profiles"  # the profiles whose views were used, comma separated


def is_out_of_distribution(score: float, threshold: float) -> bool:
    """The guard's rule for one view: above the threshold, or no number at all (NaN, inf)."""
    return not (math.isfinite(score) and score <= threshold)


def threshold_problem(metadata: dict[str, str]) -> str | None:
    """Why a guarded model's threshold metadata cannot be used (None: it can)."""
    raw = metadata.get(THRESHOLD)
    if raw is None:
        return f"its metadata has no {THRESHOLD!r}: the guard has no threshold; re-run `cellctl guard`"
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0.0):
        return f"its metadata {THRESHOLD!r} is {raw[:40]!r}, expected a finite number > 0; re-run `cellctl guard`"
    return None
