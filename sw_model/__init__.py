"""Golden models: quantisation, bit-nested arithmetic, and (later) the MoE model and scheduler."""
