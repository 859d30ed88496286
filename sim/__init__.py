"""The simulated cell: scene renderer, simulated devices, robot bridge and training data."""
