"""Argument checks shared by the components' constructors.

Amaranth reports an elaboratable that is created and never elaborated (the ``UnusedElaboratable``
warning of :mod:`amaranth.hdl`), and an object whose ``__init__`` raised is exactly that: the
warning would follow every rejected call. So a :class:`CheckedComponent` checks its arguments in
``__new__``, before the object exists; a rejected call leaves nothing behind.
"""

from amaranth.lib import wiring

__all__ = ["CheckedComponent", "ParamsComponent", "expect_params"]


def expect_params(value, kind, name="params", default=None):
    """Return ``value``, or ``default`` (``kind()`` if not given) when it is None; TypeError naming
    ``name`` and the wrong object if it is not a ``kind``."""
    if value is None:
        return kind() if default is None else default
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be a {kind.__name__}, not {value!r}")
    return value


class CheckedComponent(wiring.Component):
    """A ``wiring.Component`` whose constructor arguments are checked before it exists.

    A subclass defines the classmethod :meth:`check_arguments` with the parameters of its
    ``__init__``; it raises TypeError or ValueError naming what is wrong, and returns what
    ``__init__`` needs from them (defaults filled in), so that ``__init__`` can call it again for
    that. It runs first from ``__new__``: if it raises, no elaboratable was created. As it runs
    twice, it must not consume its arguments (constructors take sequences, not iterators).
    """

    @classmethod
    def check_arguments(cls, *args, **kwargs):
        """Raise TypeError or ValueError if the constructor cannot build from these arguments."""

    def __new__(cls, *args, **kwargs):
        cls.check_arguments(*args, **kwargs)
        # src_loc_at=1: an unused instance is reported where the constructor was called, not here
        return super().__new__(cls, src_loc_at=1)


class ParamsComponent(CheckedComponent):
    """A component built from one parameter record: ``PARAMS`` is the record's type, and a call
    without one builds ``PARAMS()`` (the block's default configuration). ``self.params`` holds the
    record; the subclass gives its interface by :meth:`members` (the signature's members, as
    ``wiring.Component`` takes them)."""

    PARAMS = None

    @classmethod
    def check_arguments(cls, params=None):
        return expect_params(params, cls.PARAMS)

    def __init__(self, params=None):
        self.params = self.check_arguments(params)
        super().__init__(self.members(self.params))

    def members(self, params):
        """``{name: In(...) or Out(...)}``: the component's interface for ``params``."""
        raise NotImplementedError
