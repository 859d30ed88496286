"""The bridge's end of the robot link: the ZeroMQ server the cells connect to (``server``),
and the robot behind it (``robot``: the Protocol; ``kuka``: KUKA.EthernetKRL over TCP)."""
