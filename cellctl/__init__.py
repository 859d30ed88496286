"""cellctl: controller of an automated magnetic particle inspection cell for fasteners."""

__version__ = "0.1.0"
