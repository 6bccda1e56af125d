"""Argument checks shared by the components' constructors."""

__all__ = ["expect_params"]


def expect_params(component, value, kind, name="params", default=True):
    """Return ``value`` (``kind()`` when it is None and ``default``), or raise TypeError naming
    ``name`` and the wrong object. The half-built ``component`` is marked as used first, so that
    Amaranth does not add an "unused elaboratable" warning to the error."""
    if value is None and default:
        return kind()
    if not isinstance(value, kind):
        component._MustUse__silence = True
        raise TypeError(f"{name} must be a {kind.__name__}, not {value!r}")
    return value
