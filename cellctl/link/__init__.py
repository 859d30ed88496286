"""The robot link: protocol version 2 (``protocol``), CURVE keys (``keys``), the cell's end
(``client``). The bridge's end lives in ``cellctl.bridge``."""
