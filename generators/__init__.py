"""Generator families behind one interface (:class:`generators.base.Generator`).

Families register themselves by name; callers use :func:`generators.registry.get_generator`
and never import a family directly, so adding one touches no caller.
"""
