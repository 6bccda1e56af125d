"""Verilog hierarchy by hand: a component converted once as its own Verilog module, and an
``Instance`` of that module wherever the design repeats it.

Amaranth writes one Verilog module per instance of a submodule, so a design with 32 PEs would
convert (and write) the PE 32 times. :func:`instance_of` stands in for one copy: it gives an
interface object of the component's signature, to ``connect`` as if it were the component, and the
``Instance`` to add as the submodule. :func:`hw.flows.verilog.top_verilog` writes the module itself.
"""

from amaranth import ClockSignal, Instance, ResetSignal
from amaranth.lib.wiring import In, Signature

__all__ = ["instance_of"]


def instance_of(module, signature, name):
    """``(interface, instance)``: an interface of ``signature`` (a ``wiring.Signature``, its signals
    named after ``name``) and an ``Instance`` of the Verilog module ``module`` with those signals on
    its ports. Ports are named as Amaranth names a converted component's: the member path joined by
    ``__``, and ``clk``/``rst`` of the ``sync`` domain."""
    if not isinstance(signature, Signature):
        raise TypeError(f"signature must be a wiring.Signature, not {signature!r}")
    interface = signature.create(path=(name,))
    ports = {"i_clk": ClockSignal(), "i_rst": ResetSignal()}
    for path, member, value in signature.flatten(interface):
        ports[("i_" if member.flow == In else "o_") + "__".join(map(str, path))] = value
    return interface, Instance(module, **ports)
