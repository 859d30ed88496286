"""The student factory (``cellctl train``): labelled folders in, a model package out.

Needs the ``train`` extra (torch, CPU); the daemon never imports this package. One concept per
module: ``items`` (what carries a label), ``split`` (by part), ``bags`` (the daemon's tiles of
each item), ``augment``, ``nets`` (student and teachers), ``fit`` (one network's training),
``package`` (the run), ``deploy`` (export, guard, quantize, measure), ``card`` (MODEL_CARD.md).
"""
