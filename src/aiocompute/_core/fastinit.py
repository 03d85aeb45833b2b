"""Making instances of frozen attrs classes for less than their ``__init__`` costs.

A frozen attrs class's ``__init__`` stores each attribute with ``object.__setattr__``, a
call through a method wrapper per attribute: about 1,100 instructions each (callgrind),
where a plain store to a slot costs a few dozen. Code that makes many instances (the
structuring fast path, ``fan_out``'s outcomes) can instead make the object as a subclass
that allows plain stores, store every attribute, and then set ``__class__`` to the frozen
class, which Python allows between a class and a subclass of the same layout. The result
is the object ``cls(...)`` would make (a genuine, frozen instance), as long as that
``__init__`` only stores its arguments; :func:`builder_for` answers None for any class
where that may not hold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["builder_for", "maker_for"]

_INIT_HOOKS = ("__attrs_pre_init__", "__attrs_post_init__", "__attrs_init__")


def builder_for(cls: type) -> type | None:
    """A subclass of the frozen attrs class ``cls`` whose instances take plain attribute
    stores, or None where building through it would not give what ``cls(...)`` gives.

    Use: ``obj = object.__new__(builder)``, store every attribute (defaults included),
    then ``obj.__class__ = cls``. Only for an attrs class whose ``__init__`` attrs wrote
    and only stores its arguments: slots holding its attributes (and ``__weakref__``) and
    nothing else, on every class of its chain, and no validator, converter, or pre- or
    post-init hook.
    """
    if not attrs.has(cls):
        return None
    code = getattr(getattr(cls, "__init__", None), "__code__", None)
    if "<attrs generated" not in getattr(code, "co_filename", ""):
        return None
    fields = attrs.fields(cls)
    slots: set[str] = set()
    for klass in cls.__mro__[:-1]:  # object has no __slots__
        declared = klass.__dict__.get("__slots__")
        if not isinstance(declared, tuple):
            return None  # a class of the chain without slots: instances have a __dict__
        slots.update(declared)
    if (
        slots - {"__weakref__"} != {a.name for a in fields}
        or any(a.validator is not None or a.converter is not None or not a.init for a in fields)
        or any(hasattr(cls, hook) for hook in _INIT_HOOKS)
    ):
        return None
    builder = type(
        f"_{cls.__name__}Builder",
        (cls,),
        {"__slots__": (), "__setattr__": object.__setattr__, "__delattr__": object.__delattr__},
    )
    try:
        # Python refuses the switch if the layouts differ in any way.
        probe: Any = object.__new__(builder)
        probe.__class__ = cls
    except TypeError:
        return None
    return builder


def maker_for(cls: type) -> Callable[..., Any]:
    """A function taking ``cls``'s attributes by position, in field order, and returning
    the instance ``cls(...)`` would make, built through :func:`builder_for`; ``cls``
    itself where no builder applies. (Code that builds instances inline, like serde's
    fast path, follows the same steps without the call.)"""
    builder = builder_for(cls)
    if builder is None:
        return cls
    names = [a.name for a in attrs.fields(cls)]
    params = ", ".join(f"a{i}" for i in range(len(names)))
    lines = [f"def make({params}):", "    obj = __new(__builder)"]
    lines += [f"    obj.{name} = a{i}" for i, name in enumerate(names)]
    lines += ["    obj.__class__ = __cls", "    return obj"]
    namespace: dict[str, Any] = {"__new": object.__new__, "__builder": builder, "__cls": cls}
    exec(compile("\n".join(lines), f"<aiocompute fastinit {cls.__qualname__}>", "exec"), namespace)
    make: Callable[..., Any] = namespace["make"]
    return make
