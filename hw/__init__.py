"""ELMoE-3D hardware: Amaranth components and the Amaranth-free parameter and ISA modules."""
